"""keras_eql: the Equalization Losses (Tan et al., TPAMI) for Keras 3.

Gradient-driven losses for long-tailed recognition. Each loss keeps per-class
accumulated positive/negative gradient magnitudes as model state and uses
their ratio to re-balance later steps.

Backends: everything under TensorFlow; the Equalization Losses and `attach`
also under JAX and PyTorch, where `import keras_eql` does not import
TensorFlow (see `keras_eql._backend`).
"""

from keras_eql import _backend, metrics, plotting
from keras_eql._backend import attach
from keras_eql._base import EqualizationLoss
from keras_eql._saving import load_model
from keras_eql._model_losses import equalization_losses, gradient_statistics
from keras_eql.losses import (
    EqualizedFocalLoss,
    EqualizedQualityFocalLoss,
    FocalSigmoidEQL,
    SigmoidEQL,
    SoftmaxEQL,
)
from keras_eql.metrics import GroupedAccuracy, frequency_groups, grouped_coco_ap
from keras_eql.plotting import plot_gradient_statistics, plot_ratio_history

# Written with TensorFlow (tf.custom_gradient, tf.distribute, tf.summary): under
# another backend they are not imported, so that `import keras_eql` needs no
# TensorFlow there (issue #16 ports them).
_TENSORFLOW_ONLY = {
    "baselines": "keras_eql.baselines", "callbacks": "keras_eql.callbacks",
    "functional": "keras_eql.functional", "layers": "keras_eql.layers",
    "registry": "keras_eql.registry",
    "GradientStatistics": "keras_eql._statistics", "validate_labels": "keras_eql._targets",
    "EQLv1": "keras_eql.baselines", "BalancedSoftmax": "keras_eql.baselines",
    "ClassBalancedLoss": "keras_eql.baselines", "LogitAdjustedLoss": "keras_eql.baselines",
    "SeesawLoss": "keras_eql.baselines", "class_balanced_weights": "keras_eql.baselines",
    "logit_adjust": "keras_eql.baselines", "seesaw_scores": "keras_eql.baselines",
    "GradientStatisticsLogger": "keras_eql.callbacks",
    "sigmoid_eql_scores": "keras_eql.functional",
    "CosineClassifier": "keras_eql.layers", "SigmoidEQLScores": "keras_eql.layers",
    "available_losses": "keras_eql.registry", "get": "keras_eql.registry",
}

if _backend.BACKEND == "tensorflow":
    from keras_eql import baselines, callbacks, functional, layers, registry  # noqa: F401
    from keras_eql._statistics import GradientStatistics
    from keras_eql._targets import validate_labels
    from keras_eql.baselines import (
        EQLv1,
        BalancedSoftmax,
        ClassBalancedLoss,
        LogitAdjustedLoss,
        SeesawLoss,
        class_balanced_weights,
        logit_adjust,
        seesaw_scores,
    )
    from keras_eql.callbacks import GradientStatisticsLogger
    from keras_eql.functional import sigmoid_eql_scores
    from keras_eql.layers import CosineClassifier, SigmoidEQLScores
    from keras_eql.registry import available_losses, get
else:
    def __getattr__(name):
        if name in _TENSORFLOW_ONLY:
            raise AttributeError(
                f"keras_eql.{name} ({_TENSORFLOW_ONLY[name]}) runs under "
                f"KERAS_BACKEND=tensorflow only in this version, not under "
                f"{_backend.BACKEND!r}; the Equalization Losses (SigmoidEQL, SoftmaxEQL, "
                "EqualizedFocalLoss, EqualizedQualityFocalLoss, FocalSigmoidEQL) and "
                "keras_eql.attach do (keras_eql issue #16).")
        raise AttributeError(f"module 'keras_eql' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "attach",
    "GradientStatisticsLogger",
    "GroupedAccuracy",
    "callbacks",
    "equalization_losses",
    "frequency_groups",
    "gradient_statistics",
    "grouped_coco_ap",
    "metrics",
    "plot_gradient_statistics",
    "plot_ratio_history",
    "plotting",
    "BalancedSoftmax",
    "CosineClassifier",
    "ClassBalancedLoss",
    "EQLv1",
    "LogitAdjustedLoss",
    "SeesawLoss",
    "available_losses",
    "baselines",
    "class_balanced_weights",
    "get",
    "load_model",
    "logit_adjust",
    "seesaw_scores",
    "EqualizationLoss",
    "EqualizedFocalLoss",
    "EqualizedQualityFocalLoss",
    "FocalSigmoidEQL",
    "GradientStatistics",
    "SigmoidEQL",
    "SigmoidEQLScores",
    "SoftmaxEQL",
    "functional",
    "sigmoid_eql_scores",
    "validate_labels",
]
if _backend.BACKEND != "tensorflow":
    __all__ = [name for name in __all__ if name not in _TENSORFLOW_ONLY]
