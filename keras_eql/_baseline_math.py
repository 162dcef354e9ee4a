"""Stateless math of the comparison baselines (see `keras_eql.baselines`).

Like `keras_eql.functional`: pure functions of targets, logits and the
per-class quantity the loss is driven by (rare-class mask, sample counts,
priors, class weights), returning an unreduced loss. Everything is computed in
log space, so the losses and their gradients stay finite for every finite
logit, and nothing depends on data-dependent shapes (XLA-safe).
Hyper-parameters are keyword-only.

Written in `keras.ops`, for every Keras backend; under TensorFlow they build
the TF kernels they were written with (`tf.nn.softmax_cross_entropy_with_logits`
and its sparse and sigmoid twins).
"""

import numpy as np
from keras import backend, ops

from keras_eql import _backend
from keras_eql._rows import sigmoid_cross_entropy
from keras_eql._rows import softmax_cross_entropy as _cross_entropy

CLASS_BALANCED_BASES = ("softmax", "sigmoid", "focal")


def _float32(x):
    return ops.cast(x, "float32")


def _is_integer(x):
    return "int" in backend.standardize_dtype(x.dtype)


def positive_vector(owner, name, values, *, allow_zero=False, maximum=None):
    """Validate a per-class vector given by the user; returns float64 NumPy.

    Raises:
        ValueError: naming `owner`, `name` and the offending value when the
            vector is not 1-D, empty, non-finite, or has an entry <= 0 (< 0
            with `allow_zero`) or > `maximum`.
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: `{name}` must be a 1-D sequence of numbers, got {values!r}.") from None
    if array.ndim != 1 or array.size == 0:
        raise ValueError(
            f"{owner}: `{name}` must be a non-empty 1-D sequence (one value per class), "
            f"got shape {array.shape}.")
    low_ok = array >= 0.0 if allow_zero else array > 0.0
    ok = np.isfinite(array) & low_ok
    if maximum is not None:
        ok &= array <= maximum
    if not ok.all():
        index = int(np.argmin(ok))
        bound = ">= 0" if allow_zero else "> 0"
        if maximum is not None:
            bound += f" and <= {maximum}"
        raise ValueError(
            f"{owner}: every entry of `{name}` must be finite and {bound}; "
            f"entry {index} is {float(array[index])!r}.")
    return array


def eql_v1(targets, logits, *, rare_mask):
    """Element-wise EQL v1 ("Grad-Blocking"), Tan et al., CVPR 2020, Eq. 7.

    `w_ij * BCE(z_ij, y_ij)` with `w_ij = 1 - E_i * T_j * (1 - y_ij)`:
    `E_i = 1` for foreground rows (a row with a positive target), `T_j = 1`
    for rare classes. Rare classes thus receive no discouraging gradient from
    the foreground rows of other classes; background rows train every class.

    Args:
        targets: 0/1 float tensor `(..., C)`; an all-zero row is background.
        logits: float tensor `(..., C)`.
        rare_mask: `(C,)` bool or 0/1, True for rare classes.

    Returns:
        float32 tensor `(..., C)`.

    Example:
        >>> import numpy as np
        >>> y = np.array([[1.0, 0.0], [0.0, 0.0]])
        >>> z = np.zeros((2, 2))
        >>> loss = ops.convert_to_numpy(eql_v1(y, z, rare_mask=[False, True]))
        >>> loss.astype(float).round(4).tolist()
        [[0.6931, 0.0], [0.6931, 0.6931]]
    """
    targets, logits = _float32(targets), _float32(logits)
    rare = ops.stop_gradient(_float32(rare_mask))
    foreground = ops.cast(ops.max(targets, axis=-1, keepdims=True) > 0.0, "float32")
    weights = 1.0 - foreground * rare * (1.0 - targets)
    return weights * sigmoid_cross_entropy(targets, logits)


def _log_counts(class_counts):
    # Classes not seen yet count as one sample (mmdet's `clamp(min=1)`).
    return ops.log(ops.maximum(ops.stop_gradient(_float32(class_counts)), 1.0))


def seesaw_cross_entropy(labels, logits, *, class_counts, p=0.8, q=2.0, eps=1e-2):
    """Per-row Seesaw loss, Wang et al., CVPR 2021, Eq. 2-5.

    Cross-entropy on `z_j + log S_ij` for the non-target classes `j` of a row
    of class `i` (the target logit is unchanged), `S_ij = M_ij * C_ij`:

    * mitigation `M_ij = (N_j / N_i)**p` if `N_j < N_i`, else 1;
    * compensation `C_ij = (sigma_j / sigma_i)**q` if `sigma_j > sigma_i`,
      else 1, with `sigma = softmax(z)` (no gradient) and `sigma_i` clamped
      below at `eps`.

    Computed as `p * min(log N_j - log N_i, 0) + q * max(log sigma_j - max(log
    sigma_i, log eps), 0)`, finite for any finite logit. Counts below 1 count
    as 1.

    Args:
        labels: integer class ids `(...)` in `0..C-1`.
        logits: float tensor `(..., C)`.
        class_counts: `(C,)` cumulative sample counts `N_j`.
        p: mitigation exponent (0 disables the mitigation factor).
        q: compensation exponent (0 disables the compensation factor).
        eps: lower clamp of the target's probability.

    Returns:
        float32 tensor `(...)`.

    Example:
        >>> import numpy as np
        >>> z = np.array([[2.0, 0.0, 0.0]])
        >>> loss = seesaw_cross_entropy(np.array([0]), z,
        ...                             class_counts=[100.0, 1.0, 100.0])
        >>> float(loss[0]) < float(ops.sparse_categorical_crossentropy(
        ...     np.array([0]), z, from_logits=True)[0])
        True
    """
    logits = _float32(logits)
    labels = ops.cast(labels, "int32")
    target = _backend.one_hot(labels, logits.shape[-1])
    return _seesaw_rows(target, labels, logits, class_counts, p, q, eps)


def _seesaw_rows(target, labels, logits, class_counts, p, q, eps):
    """`seesaw_cross_entropy` from one-hot `target` rows (and their ids, or None)."""
    log_counts = _log_counts(class_counts)
    own_log_count = ops.sum(target * log_counts, axis=-1, keepdims=True)
    log_mitigation = p * ops.minimum(log_counts - own_log_count, 0.0)
    log_scores = ops.log_softmax(ops.stop_gradient(logits), axis=-1)
    own_log_score = ops.sum(target * log_scores, axis=-1, keepdims=True)
    own_log_score = ops.maximum(own_log_score, float(np.log(eps)))
    log_compensation = q * ops.maximum(log_scores - own_log_score, 0.0)
    adjusted = logits + (1.0 - target) * (log_mitigation + log_compensation)
    return _cross_entropy(target if labels is None else labels, adjusted)


def seesaw_scores(logits, *, objectness=True):
    """Inference scores of a Seesaw head: `softmax(classes) * p_object`.

    With `objectness=True` the logits are `(..., C + 2)`: C class logits,
    then the objectness pair `[object, background]` (mmdet's layout). The
    result is `(..., C + 1)`: the C class scores times `p_object`, then
    `p_background`. With `objectness=False` it is a plain softmax.

    Args:
        logits: float tensor `(..., C + 2)` (or `(..., C)`).
        objectness: whether the last two columns are the objectness pair.

    Returns:
        Tensor `(..., C + 1)` (or `(..., C)`).

    Example:
        >>> import numpy as np
        >>> ops.convert_to_numpy(seesaw_scores(np.zeros((1, 4), "float32"))).tolist()
        [[0.25, 0.25, 0.5]]
    """
    if not objectness:
        return ops.softmax(logits, axis=-1)
    object_probabilities = ops.softmax(logits[..., -2:], axis=-1)
    classes = ops.softmax(logits[..., :-2], axis=-1) * object_probabilities[..., :1]
    return ops.concatenate([classes, object_probabilities[..., 1:]], axis=-1)


def logit_adjust(logits, *, class_priors, tau=1.0):
    """Post-hoc logit adjustment, Menon et al., ICLR 2021, Eq. 9.

    `argmax_y z_y - tau * log(pi_y)`: subtracts the scaled log-prior so that a
    model trained with plain cross-entropy predicts for the balanced error.
    Priors need not sum to 1 (counts work: a constant shift does not change
    the argmax nor the softmax).

    Args:
        logits: float tensor `(..., C)`.
        class_priors: `(C,)` positive class priors `pi_j` (or counts).
        tau: adjustment strength (1 is Bayes-optimal for the balanced error).

    Returns:
        Tensor of the logits' shape and dtype.

    Raises:
        ValueError: if a prior is not finite and positive, or the number of
            priors differs from the number of logit columns.

    Example:
        >>> import numpy as np
        >>> z = np.array([[1.0, 0.5]], "float32")
        >>> int(ops.argmax(logit_adjust(z, class_priors=[0.9, 0.1]), -1)[0])
        1
    """
    logits = ops.convert_to_tensor(logits)
    if not _backend.is_symbolic(class_priors):
        class_priors = positive_vector("logit_adjust", "class_priors", class_priors)
        width = logits.shape[-1]
        if width is not None and class_priors.shape[0] != width:
            raise ValueError(
                f"logit_adjust: {class_priors.shape[0]} class_priors for logits with "
                f"{width} columns (shape {logits.shape}).")
    log_priors = ops.log(ops.cast(class_priors, logits.dtype))
    return logits - ops.cast(tau, logits.dtype) * log_priors


def logit_adjusted_cross_entropy(targets, logits, *, class_priors, tau=1.0):
    """Per-row logit-adjusted loss, Menon et al., ICLR 2021, Eq. 10.

    `-log(exp(z_y + tau log pi_y) / sum_j exp(z_j + tau log pi_j))`, i.e.
    cross-entropy on `z + tau * log(pi)`. Balanced Softmax is the case
    `tau = 1` with counts for priors.

    Args:
        targets: integer class ids `(...)` or a distribution `(..., C)`.
        logits: float tensor `(..., C)`.
        class_priors: `(C,)` positive priors (any positive scale).
        tau: adjustment strength.

    Returns:
        float32 tensor `(...)`.

    Example:
        >>> import numpy as np
        >>> z = np.zeros((1, 2))
        >>> loss = logit_adjusted_cross_entropy(np.array([1]), z,
        ...                                     class_priors=[0.5, 0.5])
        >>> round(float(loss[0]), 4)
        0.6931
    """
    logits = _float32(logits)
    log_priors = ops.log(ops.stop_gradient(_float32(class_priors)))
    return _cross_entropy(targets, logits + tau * log_priors)


def balanced_softmax_cross_entropy(targets, logits, *, class_counts):
    """Per-row Balanced Softmax loss, Ren et al., NeurIPS 2020, Eq. 4.

    `-log(n_y exp(z_y) / sum_j n_j exp(z_j))`: cross-entropy on
    `z + log(n)`.

    Args:
        targets: integer class ids `(...)` or a distribution `(..., C)`.
        logits: float tensor `(..., C)`.
        class_counts: `(C,)` positive per-class sample counts `n_j`.

    Returns:
        float32 tensor `(...)`.

    Example:
        >>> import numpy as np
        >>> z = np.zeros((1, 2))
        >>> loss = balanced_softmax_cross_entropy(np.array([0]), z,
        ...                                       class_counts=[3.0, 1.0])
        >>> round(float(loss[0]), 4)  # -log(3 / 4)
        0.2877
    """
    return logit_adjusted_cross_entropy(targets, logits, class_priors=class_counts, tau=1.0)


def class_balanced_weights(class_counts, *, beta):
    """Class-balanced weights, Cui et al., CVPR 2019, Eq. 3-4.

    `w_j = (1 - beta) / (1 - beta**n_j)`, the inverse effective number of
    samples, normalised so that `sum_j w_j = C`. `beta = 0` gives all ones;
    `beta -> 1` approaches inverse frequency.

    Args:
        class_counts: `(C,)` positive per-class sample counts `n_j`.
        beta: in [0, 1).

    Returns:
        float64 NumPy array `(C,)`.

    Raises:
        ValueError: if `beta` is outside [0, 1) or a count is not positive.

    Example:
        >>> class_balanced_weights([1000, 10], beta=0.99).round(3).tolist()
        [0.175, 1.825]
    """
    counts = positive_vector("class_balanced_weights", "class_counts", class_counts)
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.number)) or not 0.0 <= beta < 1.0:
        raise ValueError(f"class_balanced_weights: `beta` must be a number in [0, 1), got {beta!r}.")
    beta = float(beta)
    if beta == 0.0:
        effective = np.ones_like(counts)
    else:
        # (1 - beta**n) / (1 - beta) without cancellation for beta near 1.
        effective = -np.expm1(counts * np.log(beta)) / (1.0 - beta)
    weights = 1.0 / effective
    return weights * counts.size / weights.sum()


def sigmoid_focal_cross_entropy(targets, logits, *, gamma=2.0):
    """Element-wise focal loss without alpha, Lin et al., ICCV 2017.

    `-(1 - p_t)**gamma * log(p_t)` for 0/1 targets, computed as
    `-exp(gamma * log_sigmoid(-s z)) * log_sigmoid(s z)` with `s = 2y - 1`.

    Args:
        targets: 0/1 float tensor `(..., C)`.
        logits: float tensor `(..., C)`.
        gamma: focusing parameter (>= 0; 0 is BCE).

    Returns:
        float32 tensor `(..., C)`.

    Example:
        >>> import numpy as np
        >>> y, z = np.array([[1.0]]), np.array([[0.0]])
        >>> round(float(sigmoid_focal_cross_entropy(y, z)[0, 0]), 4)  # 0.25 log 2
        0.1733
    """
    targets, logits = _float32(targets), _float32(logits)
    signed_logits = (2.0 * targets - 1.0) * logits
    modulating = ops.exp(gamma * ops.log_sigmoid(-signed_logits))
    return -modulating * ops.log_sigmoid(signed_logits)


def class_balanced_loss(targets, logits, *, class_weights, base="softmax", gamma=2.0):
    """Per-row class-balanced loss, Cui et al., CVPR 2019, Eq. 5-7.

    `w_y * L(z, y)`, `L` the base loss: softmax cross-entropy, or the sum over
    classes of sigmoid BCE or sigmoid focal loss. Dense targets weight a row
    by the target-weighted mean of the class weights (`w_y` for one-hot
    rows); all-negative (background) rows get weight 1, the mean class weight.

    Args:
        targets: integer class ids `(...)` (softmax base only) or float
            targets `(..., C)` (0/1 for the sigmoid and focal bases).
        logits: float tensor `(..., C)`.
        class_weights: `(C,)` weights, e.g. `class_balanced_weights(...)`.
        base: `"softmax"`, `"sigmoid"` or `"focal"`.
        gamma: focusing parameter of the focal base.

    Returns:
        float32 tensor `(...)`.

    Example:
        >>> import numpy as np
        >>> y = np.array([[1.0, 0.0]])
        >>> loss = class_balanced_loss(y, np.zeros((1, 2)),
        ...                            class_weights=[0.5, 1.5], base="sigmoid")
        >>> round(float(loss[0]), 4)  # 0.5 * 2 log 2
        0.6931
    """
    if base not in CLASS_BALANCED_BASES:
        raise ValueError(
            f"class_balanced_loss: unknown base={base!r}; expected one of {CLASS_BALANCED_BASES}.")
    logits = _float32(logits)
    class_weights = ops.stop_gradient(_float32(class_weights))
    targets = ops.convert_to_tensor(targets)
    if _is_integer(targets):
        targets = _backend.one_hot(targets, logits.shape[-1])
    targets = _float32(targets)
    if base == "softmax":
        losses = ops.categorical_crossentropy(targets, logits, from_logits=True)
    elif base == "sigmoid":
        losses = ops.sum(sigmoid_cross_entropy(targets, logits), axis=-1)
    else:
        losses = ops.sum(sigmoid_focal_cross_entropy(targets, logits, gamma=gamma), axis=-1)
    mass = ops.sum(targets, axis=-1)
    weighted = ops.sum(targets * class_weights, axis=-1)
    row_weights = ops.where(mass > 0.0, ops.divide_no_nan(weighted, mass), 1.0)
    return row_weights * losses
