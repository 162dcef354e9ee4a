"""Long-tail baselines for side-by-side comparison with the Equalization Losses.

Loss classes (same conventions as `keras_eql.losses`: sparse labels `0..C-1`,
`C` background where the loss has one, `ignore_class` rows dropped with Keras
mask semantics, dense targets of the logits' shape, Keras reductions and
`sample_weight`, registered serialization):

* `EQLv1`: the original Equalization Loss (Grad-Blocking), stateless.
* `SeesawLoss`: Seesaw Loss, sample counts kept as model state.
* `LogitAdjustedLoss`: logit-adjusted cross-entropy, priors given or counted.
* `BalancedSoftmax`: Balanced Softmax, counts given or counted.
* `ClassBalancedLoss`: class-balanced softmax, sigmoid or focal loss.

Stateless functions: `logit_adjust` (post-hoc logit adjustment),
`class_balanced_weights`, `seesaw_scores` and the per-row math
(`eql_v1`, `seesaw_cross_entropy`, `logit_adjusted_cross_entropy`,
`balanced_softmax_cross_entropy`, `class_balanced_loss`,
`sigmoid_focal_cross_entropy`).

Keras' `BinaryCrossentropy`, `SparseCategoricalCrossentropy` and
`BinaryFocalCrossentropy` are the plain baselines; `keras_eql.get` resolves
them by name.
"""

import keras
import numpy as np
from keras import ops

from keras_eql import _backend, _baseline_math
from keras_eql._baseline_base import BaselineLoss, CountingLoss
from keras_eql._baseline_math import (
    balanced_softmax_cross_entropy,
    class_balanced_loss,
    class_balanced_weights,
    eql_v1,
    logit_adjust,
    logit_adjusted_cross_entropy,
    positive_vector,
    seesaw_cross_entropy,
    seesaw_scores,
    sigmoid_focal_cross_entropy,
)
from keras_eql._seesaw import SeesawLoss
from keras_eql._checks import check_hyperparameter

if _backend.BACKEND == "tensorflow":
    from keras_eql._backend.tensorflow_counts import ClassCounts  # noqa: F401

__all__ = [
    "BalancedSoftmax",
    "ClassBalancedLoss",
    "EQLv1",
    "LogitAdjustedLoss",
    "SeesawLoss",
    "balanced_softmax_cross_entropy",
    "class_balanced_loss",
    "class_balanced_weights",
    "eql_v1",
    "logit_adjust",
    "logit_adjusted_cross_entropy",
    "seesaw_cross_entropy",
    "seesaw_scores",
    "sigmoid_focal_cross_entropy",
]
if _backend.BACKEND == "tensorflow":
    __all__.append("ClassCounts")

_register = keras.saving.register_keras_serializable(package="keras_eql")


def _as_list(array):
    return None if array is None else array.tolist()


@_register
class EQLv1(BaselineLoss):
    """Equalization Loss v1 ("Grad-Blocking"), Tan et al., CVPR 2020, Eq. 7.

    Sigmoid BCE over `C` columns (no objectness column) with weights
    `w_ij = 1 - E_i * T_lambda(f_j) * (1 - y_ij)`: `E_i = 1` on foreground rows,
    `T_lambda(f_j) = 1` for rare classes (`f_j < lambda`). Rare classes get no
    negative gradient from the foreground rows of other classes; background
    rows (label `C`) are exempt and train every class. The per-sample loss is
    the SUM over the class axis, so `sum_over_batch_size` gives the authors'
    `sum(w * BCE) / N`. Stateless.

    Give either `rare_mask` or `class_frequencies` (with `frequency_threshold`).

    Inputs:
        y_true: sparse labels, the logits' shape without the class axis:
            `0..C-1` classes, `C` background, `ignore_class` (-1) dropped; or
            dense 0/1 targets `(..., C)`.
        y_pred: raw logits `(..., C)`; never probabilities.
        sample_weight: optional, the logits' shape without the class axis (or
            broadcastable to it): weights of the rows; they scale the loss.

    Args:
        rare_mask: `(C,)` bools, True for the rare classes.
        class_frequencies: `(C,)` image frequencies `f_j` in [0, 1] (fraction
            of training images that contain class `j`, as in LVIS), not counts.
        frequency_threshold: `lambda`; classes with `f_j < lambda` are rare.
            The authors' default 1.77e-3 (LVIS v0.5).
        ignore_class: label of dropped rows (default -1).
        reduction: Keras reduction.
        name: name of the loss.
        dtype: Keras loss dtype.
        from_logits: must be True (the default): `y_pred` holds raw logits.
            Accepted for the Keras habit; `False` raises.

    Example:
        >>> import keras, numpy as np
        >>> from keras_eql.baselines import EQLv1
        >>> loss = EQLv1(class_frequencies=[0.5, 0.2, 0.001])
        >>> loss.rare_classes().tolist()
        [False, False, True]
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
        >>> model.compile("sgd", loss=loss, jit_compile=True)
        >>> _ = model.fit(np.ones((16, 8)), np.arange(16) % 4, verbose=0)  # 3 = background
    """

    _allow_background = True
    _binary_targets = True

    def __init__(self, rare_mask=None, class_frequencies=None, frequency_threshold=1.77e-3,
                 ignore_class=-1, reduction="sum_over_batch_size", name="eql_v1", dtype=None,
                 from_logits=True):
        label = type(self).__name__
        self.frequency_threshold = check_hyperparameter(
            label, "frequency_threshold", frequency_threshold, minimum=0.0, maximum=1.0)
        if (rare_mask is None) == (class_frequencies is None):
            raise ValueError(
                f"{label}: give exactly one of `rare_mask` or `class_frequencies` (with "
                f"`frequency_threshold`); got rare_mask={rare_mask!r}, "
                f"class_frequencies={class_frequencies!r}.")
        self.class_frequencies = None
        self.rare_mask = None
        if class_frequencies is not None:
            frequencies = positive_vector(label, "class_frequencies", class_frequencies,
                                          allow_zero=True, maximum=1.0)
            self.class_frequencies = frequencies.tolist()
            self._rare = frequencies < self.frequency_threshold
        else:
            mask = np.asarray(rare_mask)
            if mask.ndim != 1 or mask.size == 0 or not np.isin(mask, (0, 1)).all():
                raise ValueError(
                    f"{label}: `rare_mask` must be a non-empty 1-D sequence of bools (one per "
                    f"class), got {rare_mask!r}.")
            self._rare = mask.astype(bool)
            self.rare_mask = self._rare.tolist()
        super().__init__(ignore_class=ignore_class, reduction=reduction, name=name, dtype=dtype,
                         from_logits=from_logits)

    def rare_classes(self):
        """The rare-class mask `T_lambda(f_j)` as a bool NumPy array `(C,)`."""
        return self._rare.copy()

    def _classes_known(self, num_classes):
        self._check_class_columns(
            num_classes, self._rare.size,
            f"the rare-class mask has {self._rare.size} classes (EQL v1 takes C logits, no objectness column)")

    def _row_loss(self, targets, labels, logits):
        return ops.sum(eql_v1(targets, logits, rare_mask=self._rare), axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(rare_mask=self.rare_mask, class_frequencies=self.class_frequencies,
                      frequency_threshold=self.frequency_threshold)
        return config


class _PriorAdjustedLoss(CountingLoss):
    """Cross-entropy on `z + tau * log(prior)`, priors given or counted online."""

    _tau = 1.0

    def _row_loss(self, targets, labels, logits):
        if self._given_counts is not None:
            priors = self._counts_tensor()
        else:
            # Classes not seen yet count as one sample: every log-prior is finite.
            priors = ops.maximum(self._counts_tensor(), 1.0)
        return logit_adjusted_cross_entropy(
            labels if labels is not None else targets, logits, class_priors=priors, tau=self._tau)


@_register
class LogitAdjustedLoss(_PriorAdjustedLoss):
    """Logit-adjusted loss, Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, Eq. 10.

    `-log(exp(z_y + tau log pi_y) / sum_j exp(z_j + tau log pi_j))`: softmax
    cross-entropy on logits shifted by the scaled log-prior during training;
    inference uses the raw logits. Priors are given, or counted online (one
    per labelled row, soft targets fractionally) like `SeesawLoss`: model
    state, updated once per training step in the backward pass, summed over
    replicas, never moved by `evaluate()`; step `t` uses the counts of steps
    `0..t-1` (Seesaw, as mmdet, also adds step `t`'s batch), classes not seen
    yet counting as 1 (step 0 is plain CE). Under JAX online counts need
    `keras_eql.attach(model)`, as `SeesawLoss`'s. For
    a model trained with plain CE use `logit_adjust` after training instead.

    Inputs:
        y_true: class ids `0..C-1`, the logits' shape without the class axis;
            or dense (soft) targets `(..., C)`.
        y_pred: raw logits `(..., C)`; never probabilities.
        sample_weight: optional, the logits' shape without the class axis (or
            broadcastable to it): weights of the rows; they scale the loss.

    Args:
        class_priors: `(C,)` positive priors `pi_j` (any scale, counts work),
            or None to count them online.
        tau: adjustment strength (1 in the paper).
        num_classes: classes `C` for online counting (inferred when None).
        ignore_class: label of dropped rows, or None.
        update_counts: set False to freeze online counts.
        reduction: Keras reduction.
        name: name of the loss.
        dtype: Keras loss dtype.
        from_logits: must be True (the default): `y_pred` holds raw logits.
            Accepted for the Keras habit; `False` raises.

    Example:
        >>> import numpy as np
        >>> from keras_eql.baselines import LogitAdjustedLoss
        >>> loss = LogitAdjustedLoss(class_priors=[0.9, 0.1])
        >>> round(float(loss(np.array([1]), np.zeros((1, 2)))), 4)  # -log(0.1)
        2.3026
    """

    def __init__(self, class_priors=None, tau=1.0, num_classes=None, ignore_class=None,
                 update_counts=True, reduction="sum_over_batch_size",
                 name="logit_adjusted_loss", dtype=None, from_logits=True):
        label = type(self).__name__
        self._tau = check_hyperparameter(label, "tau", tau, minimum=0.0)
        given = None if class_priors is None else positive_vector(label, "class_priors", class_priors)
        super().__init__(given_counts=given, num_classes=num_classes, update_counts=update_counts,
                         ignore_class=ignore_class, reduction=reduction, name=name, dtype=dtype,
                         from_logits=from_logits)

    @property
    def tau(self):
        return self._tau

    def get_config(self):
        config = super().get_config()
        config.update(class_priors=_as_list(self._given_counts), tau=self._tau)
        return config


@_register
class BalancedSoftmax(_PriorAdjustedLoss):
    """Balanced Softmax, Ren et al., "Balanced Meta-Softmax", NeurIPS 2020, Eq. 4.

    `-log(n_y exp(z_y) / sum_j n_j exp(z_j))`: softmax cross-entropy on
    `z + log(n)`, `n_j` the per-class training counts (the logit-adjusted
    loss with `tau = 1`). Counts are given, or counted online as in
    `LogitAdjustedLoss`. Inference uses the raw logits.

    Inputs:
        y_true: class ids `0..C-1`, the logits' shape without the class axis;
            or dense (soft) targets `(..., C)`.
        y_pred: raw logits `(..., C)`; never probabilities.
        sample_weight: optional, the logits' shape without the class axis (or
            broadcastable to it): weights of the rows; they scale the loss.

    Args:
        class_counts: `(C,)` positive per-class sample counts, or None to
            count them online.
        num_classes: classes `C` for online counting (inferred when None).
        ignore_class: label of dropped rows, or None.
        update_counts: set False to freeze online counts.
        reduction: Keras reduction.
        name: name of the loss.
        dtype: Keras loss dtype.
        from_logits: must be True (the default): `y_pred` holds raw logits.
            Accepted for the Keras habit; `False` raises.

    Example:
        >>> import numpy as np
        >>> from keras_eql.baselines import BalancedSoftmax
        >>> loss = BalancedSoftmax(class_counts=[3, 1])
        >>> round(float(loss(np.array([0]), np.zeros((1, 2)))), 4)  # -log(3/4)
        0.2877
    """

    def __init__(self, class_counts=None, num_classes=None, ignore_class=None,
                 update_counts=True, reduction="sum_over_batch_size",
                 name="balanced_softmax", dtype=None, from_logits=True):
        label = type(self).__name__
        given = None if class_counts is None else positive_vector(label, "class_counts", class_counts)
        super().__init__(given_counts=given, num_classes=num_classes, update_counts=update_counts,
                         ignore_class=ignore_class, reduction=reduction, name=name, dtype=dtype,
                         from_logits=from_logits)

    def get_config(self):
        config = super().get_config()
        config.update(class_counts=_as_list(self._given_counts))
        return config


@_register
class ClassBalancedLoss(BaselineLoss):
    """Class-balanced loss, Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019.

    `CB(z, y) = (1 - beta) / (1 - beta**n_y) * L(z, y)` (Eq. 5-7), the weights
    normalised to sum to `C`; `L` is the `base` loss:

    * `"softmax"`: softmax cross-entropy; labels `0..C-1`, soft dense targets.
    * `"sigmoid"`: sigmoid BCE summed over the classes; label `C` is
      background, dense targets 0/1.
    * `"focal"`: sigmoid focal loss `-(1 - p_t)**gamma log p_t` summed over
      the classes (no alpha, as in the paper); layout as `"sigmoid"`.

    Background rows (sigmoid/focal) get weight 1, the mean class weight;
    multi-label or soft rows the target-weighted mean of their classes'
    weights. `beta = 0` is the unweighted base loss. Stateless.

    Inputs:
        y_true: class ids, the logits' shape without the class axis: `0..C-1`
            (`"softmax"`), or `0..C` with `C` background (`"sigmoid"`,
            `"focal"`); or dense targets `(..., C)`: soft for `"softmax"`,
            0/1 otherwise.
        y_pred: raw logits `(..., C)`; never probabilities.
        sample_weight: optional, the logits' shape without the class axis (or
            broadcastable to it): weights of the rows; they scale the loss.

    Args:
        class_counts: `(C,)` positive per-class training counts `n_j`.
        beta: in [0, 1); 0.9999 by default (the paper searches
            {0.9, 0.99, 0.999, 0.9999}).
        base: `"softmax"`, `"sigmoid"` or `"focal"`.
        gamma: focusing parameter of the focal base (ignored otherwise).
        ignore_class: label of dropped rows, or None.
        reduction: Keras reduction.
        name: name of the loss.
        dtype: Keras loss dtype.
        from_logits: must be True (the default): `y_pred` holds raw logits.
            Accepted for the Keras habit; `False` raises.

    Example:
        >>> from keras_eql.baselines import ClassBalancedLoss
        >>> loss = ClassBalancedLoss([900, 100], beta=0.99, base="focal")
        >>> loss.class_weights().round(3).tolist()
        [0.776, 1.224]
    """

    def __init__(self, class_counts=None, beta=0.9999, base="softmax", gamma=2.0,
                 ignore_class=None, reduction="sum_over_batch_size",
                 name="class_balanced_loss", dtype=None, from_logits=True):
        label = type(self).__name__
        if class_counts is None:
            raise ValueError(f"{label}: `class_counts` (per-class training counts) is required.")
        counts = positive_vector(label, "class_counts", class_counts)
        if isinstance(beta, bool) or not isinstance(beta, (int, float, np.number)) or not 0.0 <= beta < 1.0:
            raise ValueError(f"{label}: `beta` must be a number in [0, 1), got {beta!r}.")
        if base not in _baseline_math.CLASS_BALANCED_BASES:
            raise ValueError(
                f"{label}: unknown base={base!r}; expected one of "
                f"{_baseline_math.CLASS_BALANCED_BASES}.")
        self.class_counts = counts.tolist()
        self.beta = float(beta)
        self.base = base
        self.gamma = check_hyperparameter(label, "gamma", gamma, minimum=0.0)
        self._weights = class_balanced_weights(counts, beta=self.beta)
        self._allow_background = self._binary_targets = base != "softmax"
        super().__init__(ignore_class=ignore_class, reduction=reduction, name=name, dtype=dtype,
                         from_logits=from_logits)

    def class_weights(self):
        """The normalised class weights `(C,)` (float64 NumPy, summing to C)."""
        return self._weights.copy()

    def _classes_known(self, num_classes):
        self._check_class_columns(num_classes, self._weights.size, f"{self._weights.size} class_counts were given")

    def _row_loss(self, targets, labels, logits):
        return class_balanced_loss(targets[..., : self._weights.size], logits,
                                   class_weights=self._weights.astype(np.float32),
                                   base=self.base, gamma=self.gamma)

    def get_config(self):
        config = super().get_config()
        config.update(class_counts=self.class_counts, beta=self.beta, base=self.base,
                      gamma=self.gamma)
        return config
