"""keras_eql: the Equalization Losses (Tan et al., TPAMI) for Keras 3.

Gradient-driven losses for long-tailed recognition. Each loss keeps per-class
accumulated positive/negative gradient magnitudes as model state and uses
their ratio to re-balance later steps.

Backends: everything under TensorFlow; under JAX and PyTorch, where
`import keras_eql` imports neither TensorFlow nor the other backend (see
`keras_eql._backend`), everything but `GradientStatistics`.
"""

from keras_eql import _backend, baselines, callbacks, functional, layers, metrics, plotting, registry
from keras_eql._backend import attach
from keras_eql._base import EqualizationLoss
from keras_eql._checks import validate_labels
from keras_eql.callbacks import GradientStatisticsLogger
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
from keras_eql.functional import sigmoid_eql_scores
from keras_eql.layers import CosineClassifier, SigmoidEQLScores
from keras_eql.registry import available_losses, get

# Written with TensorFlow (tf.custom_gradient, tf.distribute, tf.summary): under
# another backend they are not imported, so that `import keras_eql` needs no
# TensorFlow there. `GradientStatistics` (with `capture`, the statistics of a
# loss written with `keras_eql.functional`) updates state from a backward
# pass, which a JAX step cannot do.
_TENSORFLOW_ONLY = {"GradientStatistics": "keras_eql._statistics"}

if _backend.BACKEND == "tensorflow":
    from keras_eql._statistics import GradientStatistics
else:
    def __getattr__(name):
        if name in _TENSORFLOW_ONLY:
            raise AttributeError(
                f"keras_eql.{name} ({_TENSORFLOW_ONLY[name]}) runs under "
                f"KERAS_BACKEND=tensorflow only in this version, not under "
                f"{_backend.BACKEND!r}; the losses, baselines, keras_eql.functional, "
                "keras_eql.layers, keras_eql.get and keras_eql.attach do (keras_eql issue #16).")
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
