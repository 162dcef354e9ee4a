"""The Equalization Losses as `keras.losses.Loss` classes.

The paper's four losses, its ablation switches (Tables 2 and 9) and FL+EQL
(Table 11, `FocalSigmoidEQL`).

Each class is a thin wrapper: its constructor arguments are its
`get_config()`, the math lives in `keras_eql.functional` (the reference
formulas) and `keras_eql._fused` (the same losses with their analytic
gradient and the statistics' sums in one backward pass, which the classes
run), the statistics in `EqualizationLoss`. Sparse labels: `0..C-1` classes, `C` background,
`ignore_class` dropped; dense targets have the logits' shape.
"""

import keras
import numpy as np
from keras import ops

from keras_eql import _backend, _rows
from keras_eql._base import EqualizationLoss
from keras_eql._checks import check_hyperparameter

if not _backend.FORWARD_STATISTICS:
    import tensorflow as tf

    from keras_eql import _fused
    from keras_eql._base import count_positive_rows

_register = keras.saving.register_keras_serializable(package="keras_eql")


def _check_switch(loss_name, name, value):
    """Validate an on/off constructor argument; returns it as a bool."""
    if isinstance(value, (bool, np.bool_)) or (
            isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{loss_name}: `{name}` must be True or False, got {value!r}.")


class _SigmoidEQLWeighting(EqualizationLoss):
    """Sigmoid-EQL's weights `w_ij` and statistics, shared with FL+EQL.

    The ratio starts at 100 (every weight 1 at step 0) and is not clipped;
    the statistics are per-sample sums of the element loss's gradient,
    without the reduction's normaliser (`_per_sample_statistics`).
    """

    _initial_ratio = 100.0
    _per_sample_statistics = True
    _minimum_statistics_format = 2
    _rows_nan_on_non_finite_logits = True

    def __init__(self, *, gamma, mu, alpha, mapping, reweight_negatives, reweight_positives,
                 **kwargs):
        label = type(self).__name__
        self.gamma = check_hyperparameter(label, "gamma", gamma, minimum=0.0)
        self.mu = check_hyperparameter(label, "mu", mu)
        self.alpha = check_hyperparameter(label, "alpha", alpha, minimum=0.0)
        if isinstance(mapping, dict):
            mapping = keras.saving.deserialize_keras_object(mapping)
        if not callable(mapping) and mapping not in _rows._MAPPINGS:
            raise ValueError(
                f"{label}: unknown mapping={mapping!r}; expected one of "
                f"{_rows._MAPPINGS} or a callable.")
        self.mapping = mapping
        self.reweight_negatives = _check_switch(label, "reweight_negatives", reweight_negatives)
        self.reweight_positives = _check_switch(label, "reweight_positives", reweight_positives)
        super().__init__(**kwargs)

    def _weight_options(self):
        """The keyword arguments of `functional.sigmoid_eql_weights`."""
        return dict(gamma=self.gamma, mu=self.mu, alpha=self.alpha, mapping=self.mapping,
                    reweight_negatives=self.reweight_negatives,
                    reweight_positives=self.reweight_positives)

    def get_config(self):
        config = super().get_config()
        config["background"] = self._allow_background
        config["targets"] = self.targets
        options = self._weight_options()
        if callable(options["mapping"]):
            options["mapping"] = keras.saving.serialize_keras_object(options["mapping"])
        config.update(options)
        return config


class _PositiveRowsNormalizer:
    """Mixin: `normalize_by_positives`, the detectors' division by the positive rows."""

    def _set_normalize_by_positives(self, normalize_by_positives, reduction):
        label = type(self).__name__
        self.normalize_by_positives = _check_switch(
            label, "normalize_by_positives", normalize_by_positives)
        if self.normalize_by_positives and reduction not in ("sum", "none", None):
            raise ValueError(
                f"{label}: normalize_by_positives=True divides the summed loss by "
                f"the number of positive rows; use reduction='sum', got {reduction!r}.")

    def _normalizer(self, targets, valid):
        if not self.normalize_by_positives:
            return None
        return count_positive_rows(targets, valid, self.num_classes)

    def _forward_normalizer(self, targets, valid):
        # Global-view SPMD (JAX): the sum is over the global batch already.
        if not self.normalize_by_positives:
            return None
        positive_rows = ops.any(targets[..., :self.num_classes] > 0.0, axis=-1)
        if valid is not None:
            positive_rows = positive_rows & valid
        return ops.maximum(ops.sum(ops.cast(positive_rows, "float32")), 1.0)


@_register
class SigmoidEQL(_SigmoidEQLWeighting):
    """Sigmoid equalization loss (EQLv2), Tan et al., Eq. 8-10.

    Binary cross-entropy per class whose negative weight is the mapped
    gradient ratio `r_j = f(G_j)` and positive weight
    `q_j = 1 + alpha (1 - r_j)`. The ratio starts at 100, so step 0 is plain
    BCE. The per-sample loss is the SUM over the class axis (the detection
    convention).

    Statistics: each step adds `sum_i s_i w_ij |sigmoid(z_ij) - y_ij|` over
    its counted rows (`s_i` the sample weight, ignored rows left out): the
    gradient of the paper's plain sum over the batch (Eq. 3-4), without the
    reduction's `1/N`, so a sample counts the same in a short batch, a batch
    with ignored rows or a full one. With `s_i = 1` these are exactly the
    sums of the authors' `collect_grad`. (Their `loss_weight` does not reach
    eqlv2's sums; a constant `sample_weight` does here, and cancels in the
    ratio.) Sums saved by keras_eql 0.1.0 carried `1/N` and are reset on
    load, with a warning (`STATISTICS_FORMAT`).

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
        reweight_negatives: negatives get `r_j` (`False`: weight 1, the
            ablation of Table 2; the positive weight still uses `r_j`).
        reweight_positives: positives get `q_j` (`False`: weight 1, as
            `alpha=0`). The statistics are always those of the weights in use.
        ignore_class: label of dropped rows (default -1).
        background: label `C` is background (default); `False` makes it an
            error (classification without background, see `EqualizationLoss`).
        decay, update_statistics, reduction, name, dtype, from_logits, targets:
            see `EqualizationLoss` (`targets="one_hot"`: dense rows with at
            most one positive take the class ids' faster path).

    Example:
        >>> import keras, keras_eql, numpy as np
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(5)])
        >>> model.compile("sgd", loss=keras_eql.SigmoidEQL(), jit_compile=True)
        >>> _ = model.fit(np.ones((16, 8)), np.arange(16) % 6, verbose=0)
        >>> model.loss.gradient_statistics()["ratio"].shape
        (5,)
    """

    def __init__(self, num_classes=None, gamma=12.0, mu=0.8, alpha=4.0,
                 mapping="sigmoid", objectness=False, reweight_negatives=True,
                 reweight_positives=True, ignore_class=-1, background=True, decay=None,
                 update_statistics=True, reduction="sum_over_batch_size",
                 name="sigmoid_eql", dtype=None, from_logits=True, targets="any"):
        self.objectness = bool(objectness)
        if self.objectness and background is False:
            raise ValueError(
                f"{type(self).__name__}: objectness=True trains the objectness column on "
                "background rows (label C); it needs background=True.")
        super().__init__(gamma=gamma, mu=mu, alpha=alpha, mapping=mapping,
                         reweight_negatives=reweight_negatives,
                         reweight_positives=reweight_positives,
                         num_classes=num_classes, ignore_class=ignore_class,
                         background=background,
                         decay=decay, update_statistics=update_statistics,
                         reduction=reduction, name=name, dtype=dtype, from_logits=from_logits,
                         targets=targets)

    def _extra_columns(self):
        return 1 if self.objectness else 0

    def _row_loss(self, targets, logits, ratio, on_column_sums, row_weights=None):
        return _fused.sigmoid_eql_rows(
            targets, logits, ratio=ratio, objectness=self.objectness,
            on_column_sums=on_column_sums, row_weights=row_weights, **self._weight_options())

    def _forward_rows(self, targets, logits, statistics):
        return _rows.sigmoid_eql_rows(targets, logits, ratio=statistics.ratio(),
                                      objectness=self.objectness, **self._weight_options())

    def get_config(self):
        config = super().get_config()
        config.update(objectness=self.objectness)
        return config


@_register
class FocalSigmoidEQL(_PositiveRowsNormalizer, _SigmoidEQLWeighting):
    """FL+EQL: Sigmoid-EQL's weights on the focal loss, Tan et al., Table 11.

    The focal element loss `-alpha_t (1 - p_t)**focal_gamma log p_t` times
    Sigmoid-EQL's `w_ij = y_ij q_j + (1 - y_ij) r_j` (`r_j = f(G_j)`,
    `q_j = 1 + alpha (1 - r_j)`): the combination the paper compares
    `EqualizedFocalLoss` with on one-stage detectors. Everything about the
    weights is Sigmoid-EQL's: the ratio starts at 100 (step 0 is focal loss),
    is not clipped, and the statistics add `sum_i s_i |dE_ij/dz_ij|`, the
    gradient of this loss's element `E` (`w_ij` and `alpha_t` included),
    per sample, without the reduction's normaliser. Layout as EFL's: `C`
    logits, label `C` background, the per-sample loss the SUM over the class
    axis.

    Args:
        num_classes: foreground classes `C` (label `C` is background).
        focal_alpha: focal loss's weight of positives (`1 - focal_alpha`
            for negatives); `None` disables it.
        focal_gamma: focal loss's focusing parameter (>= 0).
        gamma, mu, alpha, mapping, reweight_negatives, reweight_positives:
            Sigmoid-EQL's weights, see `SigmoidEQL`.
        normalize_by_positives: see `EqualizedFocalLoss` (the statistics
            never see it).
        ignore_class: label of dropped rows (default -1).
        background: label `C` is background (default); `False` makes it an
            error (classification without background, see `EqualizationLoss`).
        decay, update_statistics, reduction, name, dtype, from_logits, targets:
            see `EqualizationLoss` (`targets="one_hot"`: dense rows with at
            most one positive take the class ids' faster path).

    Example:
        >>> import keras, keras_eql, numpy as np
        >>> loss = keras_eql.FocalSigmoidEQL(normalize_by_positives=True, reduction="sum")
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> model.compile("sgd", loss=loss, jit_compile=True)
        >>> _ = model.fit(np.ones((8, 4)), np.arange(8) % 4, verbose=0)
        >>> model.loss.gradient_statistics()["ratio"].shape
        (3,)
    """

    def __init__(self, num_classes=None, focal_alpha=0.25, focal_gamma=2.0, gamma=12.0,
                 mu=0.8, alpha=4.0, mapping="sigmoid", reweight_negatives=True,
                 reweight_positives=True, normalize_by_positives=False, ignore_class=-1,
                 background=True, decay=None, update_statistics=True,
                 reduction="sum_over_batch_size", name="focal_sigmoid_eql", dtype=None,
                 from_logits=True, targets="any"):
        label = type(self).__name__
        self.focal_alpha = check_hyperparameter(
            label, "focal_alpha", focal_alpha, minimum=0.0, maximum=1.0, allow_none=True)
        self.focal_gamma = check_hyperparameter(label, "focal_gamma", focal_gamma, minimum=0.0)
        self._set_normalize_by_positives(normalize_by_positives, reduction)
        super().__init__(gamma=gamma, mu=mu, alpha=alpha, mapping=mapping,
                         reweight_negatives=reweight_negatives,
                         reweight_positives=reweight_positives,
                         num_classes=num_classes, ignore_class=ignore_class,
                         background=background,
                         decay=decay, update_statistics=update_statistics,
                         reduction=reduction, name=name, dtype=dtype, from_logits=from_logits,
                         targets=targets)

    def _row_loss(self, targets, logits, ratio, on_column_sums, row_weights=None):
        return _fused.focal_sigmoid_eql_rows(
            targets, logits, ratio=ratio, focal_alpha=self.focal_alpha,
            focal_gamma=self.focal_gamma, on_column_sums=on_column_sums,
            row_weights=row_weights, **self._weight_options())

    def _forward_rows(self, targets, logits, statistics):
        return _rows.focal_sigmoid_eql_rows(
            targets, logits, ratio=statistics.ratio(), focal_alpha=self.focal_alpha,
            focal_gamma=self.focal_gamma, **self._weight_options())

    def get_config(self):
        config = super().get_config()
        config.update(focal_alpha=self.focal_alpha, focal_gamma=self.focal_gamma,
                      normalize_by_positives=self.normalize_by_positives)
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

    def _forward_rows(self, targets, logits, statistics):
        positive, negative, _ = statistics._current()
        indicator = {"positive": positive, "negative": negative,
                     "positive_and_negative": statistics.ratio() + negative}[self.indicator]
        return _rows.softmax_eql_rows(targets, logits, indicator=indicator, tau=self.tau,
                                      eps=self.eps)

    def get_config(self):
        config = super().get_config()
        config.update(tau=self.tau, eps=self.eps, indicator=self.indicator)
        return config


class _EqualizedFocalBase(_PositiveRowsNormalizer, EqualizationLoss):
    """Shared by EFL and EQFL: ratio in [0, 1] starting at 1, the two factors, optional normalizer."""

    _clip_ratio = True
    _rows_nan_on_non_finite_logits = True

    def __init__(self, *, gamma, scale, focusing_factor, weighting_factor,
                 normalize_by_positives, reduction, **kwargs):
        label = type(self).__name__
        self.gamma = check_hyperparameter(label, "gamma", gamma, minimum=0.0, exclusive_minimum=True)
        self.scale = check_hyperparameter(label, "scale", scale, minimum=0.0)
        self.focusing_factor = _check_switch(label, "focusing_factor", focusing_factor)
        self.weighting_factor = _check_switch(label, "weighting_factor", weighting_factor)
        self._set_normalize_by_positives(normalize_by_positives, reduction)
        super().__init__(reduction=reduction, **kwargs)

    def _factor_options(self):
        """The keyword arguments of the fused rows shared by EFL and EQFL."""
        return dict(gamma=self.gamma, scale=self.scale, focusing_factor=self.focusing_factor,
                    weighting_factor=self.weighting_factor)

    def get_config(self):
        config = super().get_config()
        config.update(normalize_by_positives=self.normalize_by_positives,
                      background=self._allow_background, targets=self.targets,
                      **self._factor_options())
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
        focusing_factor: focus class `j` with `gamma_j` (`False`: with
            `gamma`, the ablation of Table 9).
        weighting_factor: weigh class `j` by `gamma_j / gamma` (`False`: by
            1). Both off is focal loss, as `scale=0` is; the statistics
            are always the gradient of the loss in use.
        normalize_by_positives: divide by the number of positive rows (at
            least 1, summed over replicas) as the detectors do; needs
            `reduction="sum"`.
        ignore_class: label of dropped rows (default -1).
        background: label `C` is background (default); `False` makes it an
            error (classification without background, see `EqualizationLoss`).
        decay, update_statistics, reduction, name, dtype, from_logits, targets:
            see `EqualizationLoss` (`targets="one_hot"`: dense rows with at
            most one positive take the class ids' faster path).

    Example:
        >>> import keras, keras_eql
        >>> loss = keras_eql.EqualizedFocalLoss()
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> model.compile("sgd", loss=loss, jit_compile=True)
    """

    def __init__(self, num_classes=None, alpha=0.25, gamma=2.0, scale=8.0,
                 focusing_factor=True, weighting_factor=True,
                 normalize_by_positives=False, ignore_class=-1, background=True,
                 decay=None, update_statistics=True, reduction="sum_over_batch_size",
                 name="equalized_focal_loss", dtype=None, from_logits=True, targets="any"):
        self.alpha = check_hyperparameter(
            type(self).__name__, "alpha", alpha, minimum=0.0, maximum=1.0, allow_none=True)
        super().__init__(num_classes=num_classes, gamma=gamma, scale=scale,
                         focusing_factor=focusing_factor, weighting_factor=weighting_factor,
                         normalize_by_positives=normalize_by_positives,
                         ignore_class=ignore_class, background=background, decay=decay,
                         update_statistics=update_statistics,
                         reduction=reduction, name=name, dtype=dtype,
                         from_logits=from_logits, targets=targets)

    def _row_loss(self, targets, logits, ratio, on_column_sums):
        return _fused.equalized_focal_loss_rows(
            targets, logits, ratio=ratio, alpha=self.alpha, on_column_sums=on_column_sums,
            **self._factor_options())

    def _forward_rows(self, targets, logits, statistics):
        return _rows.equalized_focal_loss_rows(targets, logits, ratio=statistics.ratio(),
                                               alpha=self.alpha, **self._factor_options())

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
        focusing_factor, weighting_factor: switch the two factors (Table 9),
            see `EqualizedFocalLoss`.
        normalize_by_positives: see `EqualizedFocalLoss`.
        ignore_class: label of dropped rows (default -1).
        background: label `C` is background (default); `False` makes it an
            error (classification without background, see `EqualizationLoss`).
        decay, update_statistics, reduction, name, dtype, from_logits, targets:
            see `EqualizationLoss` (`targets="one_hot"`: dense rows with at
            most one positive take the class ids' faster path).

    Example:
        >>> import keras_eql, numpy as np
        >>> loss = keras_eql.EqualizedQualityFocalLoss(num_classes=2)
        >>> float(loss(np.array([[0.7, 0.0]]), np.zeros((1, 2)))) > 0
        True
    """

    _binary_targets = False

    def __init__(self, num_classes=None, gamma=2.0, scale=8.0, focusing_factor=True,
                 weighting_factor=True, normalize_by_positives=False, ignore_class=-1,
                 background=True, decay=None, update_statistics=True,
                 reduction="sum_over_batch_size", name="equalized_quality_focal_loss",
                 dtype=None, from_logits=True, targets="any"):
        super().__init__(num_classes=num_classes, gamma=gamma, scale=scale,
                         focusing_factor=focusing_factor, weighting_factor=weighting_factor,
                         normalize_by_positives=normalize_by_positives,
                         ignore_class=ignore_class, background=background, decay=decay,
                         update_statistics=update_statistics,
                         reduction=reduction, name=name, dtype=dtype,
                         from_logits=from_logits, targets=targets)

    def _row_loss(self, targets, logits, ratio, on_column_sums, quality=None):
        return _fused.equalized_quality_focal_loss_rows(
            targets, logits, ratio=ratio, on_column_sums=on_column_sums, quality=quality,
            **self._factor_options())

    def _forward_rows(self, targets, logits, statistics):
        return _rows.equalized_quality_focal_loss_rows(
            targets, logits, ratio=statistics.ratio(), **self._factor_options())
