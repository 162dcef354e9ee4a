"""keras_eql: the Equalization Losses (Tan et al., TPAMI) for Keras 3.

Gradient-driven losses for long-tailed recognition. Each loss keeps per-class
accumulated positive/negative gradient magnitudes as model state and uses
their ratio to re-balance later steps.
"""

from keras_eql import baselines, callbacks, functional, metrics, plotting
from keras_eql._base import EqualizationLoss
from keras_eql._saving import load_model
from keras_eql._model_losses import equalization_losses, gradient_statistics
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
from keras_eql.losses import (
    EqualizedFocalLoss,
    EqualizedQualityFocalLoss,
    FocalSigmoidEQL,
    SigmoidEQL,
    SoftmaxEQL,
)
from keras_eql.metrics import GroupedAccuracy, frequency_groups, grouped_coco_ap
from keras_eql.plotting import plot_gradient_statistics, plot_ratio_history
from keras_eql.registry import available_losses, get

__version__ = "0.1.0"

__all__ = [
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
