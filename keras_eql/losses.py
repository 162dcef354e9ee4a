"""The four Equalization Losses as `keras.losses.Loss` classes.

Each class is a thin wrapper: its constructor arguments are its
`get_config()`, the math lives in `keras_eql.functional` (the reference
formulas) and `keras_eql._fused` (the same losses with their analytic
gradient and the statistics' sums in one backward pass, which the classes
run), the statistics in `EqualizationLoss`. Sparse labels: `0..C-1` classes, `C` background,
`ignore_class` dropped; dense targets have the logits' shape.
"""

import keras
import tensorflow as tf

from keras_eql import _fused, functional
from keras_eql._base import EqualizationLoss, count_positive_rows
from keras_eql._targets import check_hyperparameter

_register = keras.saving.register_keras_serializable(package="keras_eql")


@_register
class SigmoidEQL(EqualizationLoss):
    """Sigmoid equalization loss (EQLv2), Tan et al., Eq. 8-10.

    Binary cross-entropy per class whose negative weight is the mapped
    gradient ratio `r_j = f(G_j)` and positive weight
    `q_j = 1 + alpha (1 - r_j)`. The ratio starts at 100, so step 0 is plain
    BCE. The per-sample loss is the SUM over the class axis (the detection
    convention). The statistics carry the reduction's 1/N, which the authors'
    code leaves out; the ratio, the only thing the loss uses, is the same.

    Inputs:
        y_true: sparse labels, the logits' shape without the class axis:
            `0..C-1` classes, `C` background, `ignore_class` dropped; or dense
            0/1 targets of the logits' shape (all-zero row: background).
        y_pred: raw logits `(..., C)`, `(..., C + 1)` with `objectness`;
            never probabilities (no sigmoid on the model's output).
        sample_weight: optional, the logits' shape without the class axis (or
            broadcastable to it): weights of the rows; they scale the loss and
            the statistics.

    Args:
        num_classes: foreground classes `C` (see `EqualizationLoss`).
        gamma: steepness of the sigmoid mapping.
        mu: centre of the sigmoid mapping.
        alpha: positive-weight boost of rare classes.
        mapping: `"sigmoid"`, `"linear"`, `"square"`, `"sqrt"` (Table 3) or
            a callable on the ratio.
        objectness: the logits carry one extra LAST column, the objectness
            branch, trained as the authors do (positive on background rows,
            label `C`), never re-weighted and never counted in the statistics.
            Score with `keras_eql.sigmoid_eql_scores` / `SigmoidEQLScores`.
        ignore_class: label of dropped rows (default -1).
        decay, update_statistics, reduction, name, dtype, from_logits: see
            `EqualizationLoss`.

    Example:
        >>> import keras, keras_eql, numpy as np
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(5)])
        >>> model.compile("sgd", loss=keras_eql.SigmoidEQL(), jit_compile=True)
        >>> _ = model.fit(np.ones((16, 8)), np.arange(16) % 6, verbose=0)
        >>> model.loss.gradient_statistics()["ratio"].shape
        (5,)
    """

    _initial_ratio = 100.0

    def __init__(self, num_classes=None, gamma=12.0, mu=0.8, alpha=4.0,
                 mapping="sigmoid", objectness=False, ignore_class=-1,
                 decay=None, update_statistics=True,
                 reduction="sum_over_batch_size", name="sigmoid_eql", dtype=None,
                 from_logits=True):
        label = type(self).__name__
        self.gamma = check_hyperparameter(label, "gamma", gamma, minimum=0.0)
        self.mu = check_hyperparameter(label, "mu", mu)
        self.alpha = check_hyperparameter(label, "alpha", alpha, minimum=0.0)
        if isinstance(mapping, dict):
            mapping = keras.saving.deserialize_keras_object(mapping)
        if not callable(mapping) and mapping not in functional._MAPPINGS:
            raise ValueError(
                f"{label}: unknown mapping={mapping!r}; expected one of "
                f"{functional._MAPPINGS} or a callable.")
        self.mapping = mapping
        self.objectness = bool(objectness)
        super().__init__(num_classes=num_classes, ignore_class=ignore_class,
                         decay=decay, update_statistics=update_statistics,
                         reduction=reduction, name=name, dtype=dtype, from_logits=from_logits)

    def _extra_columns(self):
        return 1 if self.objectness else 0

    def _row_loss(self, targets, logits, ratio, on_column_sums):
        return _fused.sigmoid_eql_rows(
            targets, logits, ratio=ratio, gamma=self.gamma, mu=self.mu, alpha=self.alpha,
            mapping=self.mapping, objectness=self.objectness, on_column_sums=on_column_sums)

    def get_config(self):
        config = super().get_config()
        mapping = self.mapping
        if callable(mapping):
            mapping = keras.saving.serialize_keras_object(mapping)
        config.update(gamma=self.gamma, mu=self.mu, alpha=self.alpha,
                      mapping=mapping, objectness=self.objectness)
        return config


_INDICATORS = {
    "positive": "positive", "pos": "positive",
    "negative": "negative", "neg": "negative",
    "positive_and_negative": "positive_and_negative",
    "pos_and_neg": "positive_and_negative",
}


@_register
class SoftmaxEQL(EqualizationLoss):
    """Softmax equalization loss, Tan et al., Eq. 16.

    Softmax cross-entropy whose logits are calibrated by the accumulated
    gradients: `p_j` proportional to `max(I_j, eps)**tau * exp(z_j)`, exactly
    the authors' pairwise form `z_j + tau log(c_j / c_y)`. All statistics are
    zero at step 0, which is clamped to `eps` for every class: plain cross
    entropy. Inference uses the raw logits.

    Inputs:
        y_true: class ids `0..C-1`, the logits' shape without the class axis
            (no background label); or dense targets `(..., C)`, one-hot or
            soft (label smoothing, mixup).
        y_pred: raw logits `(..., C)`; never probabilities (no softmax on the
            model's output).
        sample_weight: optional, the logits' shape without the class axis (or
            broadcastable to it): weights of the rows; they scale the loss and
            the statistics.

    Args:
        num_classes: classes `C` (no background label).
        tau: `pi` of the paper, the calibration strength.
        eps: lower clamp of the indicator.
        indicator: `"positive"` (accumulated positive gradient, the
            default), `"negative"`, or `"positive_and_negative"` (the authors'
            `pos_neg + neg_grad`, kept as they wrote it). The short names
            `"pos"`, `"neg"`, `"pos_and_neg"` are accepted.
        ignore_class: label of dropped rows (default None).
        decay, update_statistics, reduction, name, dtype, from_logits: see
            `EqualizationLoss`.

    Example:
        >>> import keras_eql, numpy as np
        >>> loss = keras_eql.SoftmaxEQL(num_classes=3)
        >>> round(float(loss(np.array([0, 2]), np.zeros((2, 3)))), 4)
        1.0986
    """

    _allow_background = False
    _binary_targets = False

    def __init__(self, num_classes=None, tau=1.0, eps=1e-4, indicator="positive",
                 ignore_class=None, decay=None, update_statistics=True,
                 reduction="sum_over_batch_size", name="softmax_eql", dtype=None,
                 from_logits=True):
        label = type(self).__name__
        self.tau = check_hyperparameter(label, "tau", tau, minimum=0.0)
        self.eps = check_hyperparameter(label, "eps", eps, minimum=0.0, exclusive_minimum=True)
        if indicator not in _INDICATORS:
            raise ValueError(
                f"{label}: unknown indicator={indicator!r}; expected one of "
                f"{sorted(set(_INDICATORS.values()))} (or pos/neg/pos_and_neg).")
        self.indicator = _INDICATORS[indicator]
        super().__init__(num_classes=num_classes, ignore_class=ignore_class,
                         decay=decay, update_statistics=update_statistics,
                         reduction=reduction, name=name, dtype=dtype, from_logits=from_logits)

    def _indicator_values(self, ratio):
        statistics = self._statistics
        if self.indicator == "positive":
            return tf.convert_to_tensor(statistics.positive)
        if self.indicator == "negative":
            return tf.convert_to_tensor(statistics.negative)
        return ratio + tf.convert_to_tensor(statistics.negative)

    def _row_loss(self, targets, logits, ratio, on_column_sums):
        indicator = tf.stop_gradient(self._indicator_values(ratio))
        return _fused.softmax_eql_rows(targets, logits, indicator=indicator, tau=self.tau,
                                       eps=self.eps, on_column_sums=on_column_sums)

    def get_config(self):
        config = super().get_config()
        config.update(tau=self.tau, eps=self.eps, indicator=self.indicator)
        return config


class _EqualizedFocalBase(EqualizationLoss):
    """Shared by EFL and EQFL: ratio in [0, 1] starting at 1, optional normalizer."""

    _clip_ratio = True

    def __init__(self, *, gamma, scale, normalize_by_positives, reduction, **kwargs):
        label = type(self).__name__
        self.gamma = check_hyperparameter(label, "gamma", gamma, minimum=0.0, exclusive_minimum=True)
        self.scale = check_hyperparameter(label, "scale", scale, minimum=0.0)
        self.normalize_by_positives = bool(normalize_by_positives)
        if self.normalize_by_positives and reduction not in ("sum", "none", None):
            raise ValueError(
                f"{label}: normalize_by_positives=True divides the summed loss by "
                f"the number of positive rows; use reduction='sum', got {reduction!r}.")
        super().__init__(reduction=reduction, **kwargs)

    def _normalizer(self, targets, valid):
        if not self.normalize_by_positives:
            return None
        return count_positive_rows(targets, valid, self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(gamma=self.gamma, scale=self.scale,
                      normalize_by_positives=self.normalize_by_positives)
        return config


@_register
class EqualizedFocalLoss(_EqualizedFocalBase):
    """Equalized Focal Loss, Li et al. / Tan et al., Eq. 18-21.

    Focal loss with a per-class focusing factor `gamma_j = gamma + scale (1 -
    G_j)` and weighting factor `gamma_j / gamma`, `G_j` the gradient ratio
    clipped to [0, 1] and starting at 1 (step 0 is focal loss). The
    per-sample loss is the SUM over the class axis. `alpha_t` is applied as
    in the authors' code (and so enters the statistics).

    Inputs:
        y_true: sparse labels, the logits' shape without the class axis:
            `0..C-1` classes, `C` background, `ignore_class` (-1) dropped; or
            dense 0/1 targets `(..., C)` (all-zero row: background), as
            KerasHub's RetinaNet passes them.
        y_pred: raw logits `(..., C)`, no background column; never
            probabilities (no sigmoid on the model's output).
        sample_weight: optional, the logits' shape without the class axis (or
            broadcastable to it): weights of the rows; they scale the loss and
            the statistics.

    Args:
        num_classes: foreground classes `C` (label `C` is background).
        alpha: weight of positives (`1 - alpha` for negatives); `None`
            disables it.
        gamma: base focusing parameter `gamma_b` (> 0).
        scale: `s`, 8 in the paper's ATSS runs, 4 in the YOLOX configs.
        normalize_by_positives: divide by the number of positive rows (at
            least 1, summed over replicas) as the detectors do; needs
            `reduction="sum"`.
        ignore_class: label of dropped rows (default -1).
        decay, update_statistics, reduction, name, dtype, from_logits: see
            `EqualizationLoss`.

    Example:
        >>> import keras, keras_eql
        >>> loss = keras_eql.EqualizedFocalLoss()
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> model.compile("sgd", loss=loss, jit_compile=True)
    """

    def __init__(self, num_classes=None, alpha=0.25, gamma=2.0, scale=8.0,
                 normalize_by_positives=False, ignore_class=-1, decay=None,
                 update_statistics=True, reduction="sum_over_batch_size",
                 name="equalized_focal_loss", dtype=None, from_logits=True):
        self.alpha = check_hyperparameter(
            type(self).__name__, "alpha", alpha, minimum=0.0, maximum=1.0, allow_none=True)
        super().__init__(num_classes=num_classes, gamma=gamma, scale=scale,
                         normalize_by_positives=normalize_by_positives,
                         ignore_class=ignore_class, decay=decay,
                         update_statistics=update_statistics,
                         reduction=reduction, name=name, dtype=dtype,
                         from_logits=from_logits)

    def _row_loss(self, targets, logits, ratio, on_column_sums):
        return _fused.equalized_focal_loss_rows(
            targets, logits, ratio=ratio, alpha=self.alpha, gamma=self.gamma,
            scale=self.scale, on_column_sums=on_column_sums)

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha)
        return config


@_register
class EqualizedQualityFocalLoss(_EqualizedFocalBase):
    """Equalized Quality Focal Loss, Tan et al., Eq. 22-23.

    Quality focal loss with EFL's per-class focusing and weighting factors.
    Dense targets are IoU-quality scores in [0, 1] (positive where > 0);
    sparse labels give quality 1. Statistics split positives and negatives by
    the binary target, as the authors do.

    Inputs:
        y_true: dense IoU-quality targets `(..., C)` in [0, 1], positive where
            > 0; or sparse labels as for `EqualizedFocalLoss` (quality 1).
        y_pred: raw logits `(..., C)`; never probabilities (no sigmoid on the
            model's output).
        sample_weight: optional, the logits' shape without the class axis (or
            broadcastable to it): weights of the rows; they scale the loss and
            the statistics.

    Args:
        num_classes: foreground classes `C`.
        gamma: base focusing parameter (> 0).
        scale: `s` (8; the authors' YOLOX configs use 4).
        normalize_by_positives: see `EqualizedFocalLoss`.
        ignore_class: label of dropped rows (default -1).
        decay, update_statistics, reduction, name, dtype, from_logits: see
            `EqualizationLoss`.

    Example:
        >>> import keras_eql, numpy as np
        >>> loss = keras_eql.EqualizedQualityFocalLoss(num_classes=2)
        >>> float(loss(np.array([[0.7, 0.0]]), np.zeros((1, 2)))) > 0
        True
    """

    _binary_targets = False

    def __init__(self, num_classes=None, gamma=2.0, scale=8.0,
                 normalize_by_positives=False, ignore_class=-1, decay=None,
                 update_statistics=True, reduction="sum_over_batch_size",
                 name="equalized_quality_focal_loss", dtype=None, from_logits=True):
        super().__init__(num_classes=num_classes, gamma=gamma, scale=scale,
                         normalize_by_positives=normalize_by_positives,
                         ignore_class=ignore_class, decay=decay,
                         update_statistics=update_statistics,
                         reduction=reduction, name=name, dtype=dtype,
                         from_logits=from_logits)

    def _row_loss(self, targets, logits, ratio, on_column_sums):
        return _fused.equalized_quality_focal_loss_rows(
            targets, logits, ratio=ratio, gamma=self.gamma, scale=self.scale,
            on_column_sums=on_column_sums)
