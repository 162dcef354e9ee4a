"""Stateless math of the Equalization Losses.

Every function here is pure: it takes dense targets, logits and the
per-class statistic the loss is driven by (the gradient ratio, or the
Softmax-EQL indicator) and returns an unreduced loss. Nothing is stored and
nothing is accumulated, so these functions suit custom training loops that
keep their own statistics. The `keras.losses.Loss` classes in
`keras_eql.losses` wrap them and own the statistics.

All computations are in log space (`log_sigmoid`, `softplus`,
`logsumexp`), so the loss and its gradient stay finite for any finite
logit. Hyper-parameters are keyword-only.

Written in `keras.ops`: the same functions run under every Keras backend
(under TensorFlow they build the same TF kernels, e.g.
`tf.nn.sigmoid_cross_entropy_with_logits`) and take NumPy arrays or the
backend's tensors.

Custom loops that want these losses' statistics use
`GradientStatistics.capture` under TensorFlow; it is TensorFlow-only (see
`keras_eql._statistics`): its sums come from the backward pass, which a
JAX function cannot write state from, and computing them in the forward
pass would need the gradient of whatever reduces the returned elements,
which these functions do not know. Under JAX the loss classes compute
their statistics analytically (`keras_eql._forward`).
"""

from keras import ops

from keras_eql import _rows

__all__ = [
    "equalized_focal_loss",
    "equalized_quality_focal_loss",
    "focal_sigmoid_eql",
    "sigmoid_eql",
    "sigmoid_eql_scores",
    "sigmoid_eql_weights",
    "softmax_eql",
]


def _float32(x):
    return ops.cast(x, "float32")


def _bce(targets, logits):
    """Element-wise sigmoid cross-entropy (TF's `sigmoid_cross_entropy_with_logits`)."""
    return _rows.sigmoid_cross_entropy(targets, logits)


def sigmoid_eql_weights(ratio, *, gamma=12.0, mu=0.8, alpha=4.0, mapping="sigmoid",
                        reweight_negatives=True, reweight_positives=True):
    """Per-class positive and negative weights of Sigmoid-EQL (Eq. 8-9).

    The negative weight is the mapped gradient ratio `r_j = f(g_j)` and the
    positive weight `q_j = 1 + alpha * (1 - r_j)`. `f` is one of the mapping
    functions of Table 3 of the paper: `"sigmoid"` (the default,
    `1 / (1 + exp(-gamma * (g - mu)))`), `"linear"` (`g`), `"square"`
    (`g**2`), `"sqrt"` (`sqrt(g)`), or a callable taking and returning a
    float32 tensor. Mapped values are clipped to [0, 1] (footnote 2).

    The two sides switch off independently (the paper's Table 2 ablation):
    `reweight_negatives=False` makes every negative weight 1 while the
    positive weight still uses `r_j = f(g_j)`; `reweight_positives=False`
    makes every positive weight 1 (as `alpha=0` does).

    Args:
        ratio: float tensor of shape `(C,)`, the accumulated gradient ratio.
        gamma: steepness of the sigmoid mapping.
        mu: centre of the sigmoid mapping.
        alpha: how much the positive weight grows for rare classes.
        mapping: name of the mapping function, or a callable.
        reweight_negatives: whether negatives get `r_j` (else 1).
        reweight_positives: whether positives get `q_j` (else 1).

    Returns:
        A tuple `(positive_weights, negative_weights)`, each of shape `(C,)`.

    Example:
        >>> import numpy as np
        >>> q, r = sigmoid_eql_weights(np.array([100.0, 0.0]))
        >>> [round(float(v), 4) for v in r]
        [1.0, 0.0001]
        >>> q, r = sigmoid_eql_weights(np.array([0.0]), reweight_negatives=False)
        >>> [round(float(q[0]), 4), float(r[0])]
        [4.9997, 1.0]
    """
    # One implementation for every backend (keras.ops); under TensorFlow it
    # builds the same TF ops.
    return _rows.sigmoid_eql_weights(ratio, gamma=gamma, mu=mu, alpha=alpha, mapping=mapping,
                                     reweight_negatives=reweight_negatives,
                                     reweight_positives=reweight_positives)


def sigmoid_eql(
    targets,
    logits,
    *,
    ratio,
    gamma=12.0,
    mu=0.8,
    alpha=4.0,
    mapping="sigmoid",
    objectness=False,
    reweight_negatives=True,
    reweight_positives=True,
):
    """Element-wise Sigmoid-EQL (EQLv2), Eq. 10 of the paper.

    `w_ij * BCE(z_ij, y_ij)` with `w_ij = y_ij * q_j + (1 - y_ij) * r_j` from
    `sigmoid_eql_weights`. The weights depend on the statistics only and carry
    no gradient. With `objectness=True` the last column is the objectness
    branch: it is never re-weighted (weight 1).

    Args:
        targets: 0/1 float tensor `(..., K)`.
        logits: float tensor `(..., K)`.
        ratio: `(C,)` gradient ratio, `C = K - 1` with objectness, else `K`.
        gamma, mu, alpha, mapping, reweight_negatives, reweight_positives:
            see `sigmoid_eql_weights`.
        objectness: whether the last column is the objectness branch.

    Returns:
        float32 tensor `(..., K)`: the weighted binary cross-entropy.

    Example:
        >>> import numpy as np
        >>> y = np.array([[1.0, 0.0]])
        >>> z = np.array([[2.0, -1.0]])
        >>> loss = sigmoid_eql(y, z, ratio=np.array([100.0, 100.0]))
        >>> tuple(loss.shape)
        (1, 2)
    """
    targets, logits = _float32(targets), _float32(logits)
    positive_weights, negative_weights = sigmoid_eql_weights(
        ratio, gamma=gamma, mu=mu, alpha=alpha, mapping=mapping,
        reweight_negatives=reweight_negatives, reweight_positives=reweight_positives,
    )
    if objectness:
        one = ops.ones((1,), "float32")
        positive_weights = ops.concatenate([positive_weights, one], 0)
        negative_weights = ops.concatenate([negative_weights, one], 0)
    weights = targets * positive_weights + (1.0 - targets) * negative_weights
    return weights * _bce(targets, logits)


def sigmoid_eql_scores(logits, *, objectness=True):
    """Inference scores of Sigmoid-EQL: `p_j * (1 - p_objectness)`.

    The objectness column is trained as a background detector (positive on
    background rows, as in the authors' code), so the probability that a
    region holds an object is `1 - p_bg`. The last column of the result stays
    `p_bg`. With `objectness=False` this is a plain sigmoid.

    Args:
        logits: float tensor `(..., C + 1)` (objectness last).
        objectness: whether to multiply by `1 - p_bg`.

    Returns:
        Tensor of the logits' shape and dtype.

    Example:
        >>> import numpy as np
        >>> from keras import ops
        >>> ops.convert_to_numpy(sigmoid_eql_scores(np.zeros((1, 2), "float32"))).tolist()
        [[0.25, 0.5]]
    """
    probabilities = ops.sigmoid(logits)
    if not objectness:
        return probabilities
    background = probabilities[..., -1:]
    return ops.concatenate(
        [probabilities[..., :-1] * (1.0 - background), background], axis=-1
    )


def _focal_factors(ratio, gamma, scale, focusing_factor=True, weighting_factor=True):
    """Focusing factor `gamma_j = gamma + s (1 - G_j)` and weight `gamma_j / gamma`.

    Either switched off is its plain focal-loss value: `gamma` and 1 (Table 9).
    """
    return _rows._focal_factors(ratio, gamma, scale, focusing_factor, weighting_factor)


def equalized_focal_loss(
    targets, logits, *, ratio, alpha=0.25, gamma=2.0, scale=8.0,
    focusing_factor=True, weighting_factor=True,
):
    """Element-wise Equalized Focal Loss (Eq. 18-21).

    `-alpha_t * w_j * (1 - p_t)**gamma_j * log(p_t)` with the focusing factor
    `gamma_j = gamma + scale * (1 - G_j)` and weighting factor
    `w_j = gamma_j / gamma`. `gamma_j` and `w_j` are treated as constants;
    the focal term is differentiated, as in focal loss. Computed as
    `exp(gamma_j * log_sigmoid(-s z))` times `log_sigmoid(s z)` with
    `s = 2y - 1`, finite for every finite logit (the authors' `-log(sigmoid)`
    returns inf past z = 16.6 in float32).

    The two factors switch off independently (the paper's Table 9):
    `focusing_factor=False` focuses every class with `gamma`,
    `weighting_factor=False` weighs every class 1; both off is focal loss
    (as `scale=0` is).

    Args:
        targets: 0/1 float tensor `(..., C)`.
        logits: float tensor `(..., C)`.
        ratio: `(C,)` gradient ratio `G_j` in [0, 1].
        alpha: positive-class balance `alpha_t` (`1 - alpha` for negatives);
            `None` disables it.
        gamma: base focusing parameter `gamma_b` (> 0).
        scale: `s`, how much rare classes are focused.
        focusing_factor: whether the exponent is `gamma_j` (else `gamma`).
        weighting_factor: whether the weight is `gamma_j / gamma` (else 1).

    Returns:
        float32 tensor `(..., C)`.

    Example:
        >>> import numpy as np
        >>> from keras import ops
        >>> y = np.array([[1.0, 0.0]])
        >>> z = np.array([[2.0, 30.0]])
        >>> bool(np.isfinite(ops.convert_to_numpy(
        ...     equalized_focal_loss(y, z, ratio=np.ones(2)))).all())
        True
    """
    targets, logits = _float32(targets), _float32(logits)
    focusing, weighting = _focal_factors(ratio, gamma, scale, focusing_factor, weighting_factor)
    signed_logits = (2.0 * targets - 1.0) * logits
    log_p_t = ops.log_sigmoid(signed_logits)
    modulating = ops.exp(focusing * ops.log_sigmoid(-signed_logits))
    loss = -weighting * modulating * log_p_t
    if alpha is not None:
        loss = loss * (alpha * targets + (1.0 - alpha) * (1.0 - targets))
    return loss


def equalized_quality_focal_loss(
    targets, logits, *, ratio, gamma=2.0, scale=8.0,
    focusing_factor=True, weighting_factor=True,
):
    """Element-wise Equalized Quality Focal Loss (Eq. 22-23).

    Positive elements (target > 0, the IoU-quality score `y'`):
    `w_j * |y' - p|**gamma_j * BCE(z, y')`; negative elements:
    `w_j * p**gamma_j * BCE(z, 0)`. The modulating factors are differentiated;
    `gamma_j` and `w_j` are constants, as in `equalized_focal_loss`.

    Args:
        targets: float tensor `(..., C)` in [0, 1]: quality scores of the
            positives, 0 for negatives.
        logits: float tensor `(..., C)`.
        ratio: `(C,)` gradient ratio in [0, 1].
        gamma: base focusing parameter (> 0).
        scale: `s`, how much rare classes are focused.
        focusing_factor, weighting_factor: see `equalized_focal_loss`.

    Returns:
        float32 tensor `(..., C)`.

    Example:
        >>> import numpy as np
        >>> y = np.array([[0.8, 0.0]])
        >>> z = np.array([[1.0, -2.0]])
        >>> tuple(equalized_quality_focal_loss(y, z, ratio=np.ones(2)).shape)
        (1, 2)
    """
    targets, logits = _float32(targets), _float32(logits)
    focusing, weighting = _focal_factors(ratio, gamma, scale, focusing_factor, weighting_factor)
    probabilities = ops.sigmoid(logits)
    bce = _bce(targets, logits)
    # Negatives: p**gamma_j in log space; positives: |y' - p|**gamma_j. Both
    # branches are finite everywhere, so `where` passes finite gradients.
    negative = ops.exp(focusing * ops.log_sigmoid(logits)) * bce
    # |y' - p|**gamma_j has an infinite slope at y' = p when gamma_j < 1: take
    # the power only where the distance is positive (its limit there is 0).
    distance = ops.abs(targets - probabilities)
    nonzero = distance > 0.0
    modulating = ops.where(nonzero, ops.power(ops.where(nonzero, distance, 1.0), focusing), 0.0)
    positive = modulating * bce
    return weighting * ops.where(targets > 0.0, positive, negative)


def focal_sigmoid_eql(
    targets,
    logits,
    *,
    ratio,
    focal_alpha=0.25,
    focal_gamma=2.0,
    gamma=12.0,
    mu=0.8,
    alpha=4.0,
    mapping="sigmoid",
    reweight_negatives=True,
    reweight_positives=True,
):
    """Element-wise FL+EQL (Table 11): Sigmoid-EQL's weights on focal loss.

    `-w_ij * alpha_t * (1 - p_t)**focal_gamma * log(p_t)`, with Sigmoid-EQL's
    `w_ij = y_ij q_j + (1 - y_ij) r_j` from `sigmoid_eql_weights` (no
    gradient) and the focal term differentiated, as in focal loss. The
    combination the paper compares Equalized Focal Loss with.

    Args:
        targets: 0/1 float tensor `(..., C)`.
        logits: float tensor `(..., C)`.
        ratio: `(C,)` gradient ratio (Sigmoid-EQL's, not clipped).
        focal_alpha: positive-class balance `alpha_t` (`1 - focal_alpha`
            for negatives); `None` disables it.
        focal_gamma: focusing parameter of the focal loss (>= 0).
        gamma, mu, alpha, mapping, reweight_negatives, reweight_positives:
            see `sigmoid_eql_weights`.

    Returns:
        float32 tensor `(..., C)`.

    Example:
        >>> import numpy as np
        >>> y = np.array([[1.0, 0.0]])
        >>> z = np.array([[2.0, -1.0]])
        >>> tuple(focal_sigmoid_eql(y, z, ratio=np.array([100.0, 100.0])).shape)
        (1, 2)
    """
    targets, logits = _float32(targets), _float32(logits)
    positive_weights, negative_weights = sigmoid_eql_weights(
        ratio, gamma=gamma, mu=mu, alpha=alpha, mapping=mapping,
        reweight_negatives=reweight_negatives, reweight_positives=reweight_positives,
    )
    if focal_alpha is not None:
        positive_weights = positive_weights * focal_alpha
        negative_weights = negative_weights * (1.0 - focal_alpha)
    weights = targets * positive_weights + (1.0 - targets) * negative_weights
    signed_logits = (2.0 * targets - 1.0) * logits
    modulating = ops.exp(focal_gamma * ops.log_sigmoid(-signed_logits))
    return -weights * modulating * ops.log_sigmoid(signed_logits)


def softmax_eql(targets, logits, *, indicator, tau=1.0, eps=1e-4):
    """Per-row Softmax-EQL (Eq. 16), the calibrated softmax cross-entropy.

    The authors calibrate non-target logits by
    `tau * (log c_j - log c_y)`, `c_j = max(I_j, eps)`. Softmax ignores
    per-row constants, so this equals cross-entropy on `z + tau * log c`
    (`p_j` proportional to `c_j**tau * exp(z_j)`), which is what is computed.

    Args:
        targets: integer class ids `(...)` (sparse) or a float distribution
            `(..., C)` (dense one-hot).
        logits: float tensor `(..., C)`.
        indicator: `(C,)` per-class indicator `I_j` (by default the
            accumulated positive gradient).
        tau: `pi` of the paper, the calibration strength.
        eps: lower clamp of the indicator; at `I = 0` there is no calibration.

    Returns:
        float32 tensor of the logits' shape without the class axis.

    Example:
        >>> import numpy as np
        >>> labels = np.array([0, 1])
        >>> z = np.array([[2.0, 0.0], [0.0, 2.0]])
        >>> tuple(softmax_eql(labels, z, indicator=np.zeros(2)).shape)
        (2,)
    """
    logits = _float32(logits)
    offset = tau * ops.log(
        ops.maximum(ops.stop_gradient(_float32(indicator)), eps)
    )
    return _rows.softmax_cross_entropy(targets, logits + offset)

