"""`SeesawLoss`: Seesaw Loss (Wang et al., CVPR 2021) with counts as model state."""

import keras
from keras import ops

from keras_eql import _backend, _baseline_math
from keras_eql._baseline_base import CountingLoss
from keras_eql._checks import check_hyperparameter

if not _backend.FORWARD_STATISTICS:
    import tensorflow as tf

    from keras_eql import _targets


@keras.saving.register_keras_serializable(package="keras_eql")
class SeesawLoss(CountingLoss):
    """Seesaw Loss, Wang et al., "Seesaw Loss for Long-Tailed Instance Segmentation", CVPR 2021.

    Softmax cross-entropy whose non-target logits are shifted by `log S_ij`,
    `S_ij = M_ij * C_ij` for a row of class `i` (Eq. 2-5):

    * mitigation `M_ij = (N_j / N_i)**p` when `N_j < N_i` (else 1), `N` the
      cumulative per-class sample counts: a frequent class `i` stops pushing
      down the rarer classes `j`;
    * compensation `C_ij = (sigma_j / max(sigma_i, eps))**q` when that ratio
      exceeds 1 (else 1), `sigma = softmax(z)` without gradient: a class `j`
      the model wrongly prefers over `i` is pushed down harder.

    Layouts:

    * `objectness=False` (default): `C` logits, labels `0..C-1`, plain
      classification.
    * `objectness=True`: mmdet's two-stage head, `C + 2` logits: the `C`
      class logits, then the objectness pair `[object, background]`. Labels
      `0..C`, `C` = background. The per-row loss is the 2-way objectness
      cross-entropy plus, on foreground rows only, the Seesaw class loss,
      which with `sum_over_batch_size` is mmdet's `(sum obj + sum_fg cls) / N`.
      Score with `keras_eql.baselines.seesaw_scores`.

    Counts: the loss at step `t` uses the cumulative counts of steps `0..t`,
    this step's batch included, exactly as mmdet's `SeesawLoss` adds the
    batch to `cum_samples` before computing the loss; so step 0 already
    mitigates by the first batch's counts. Classes not seen yet count as 1
    (mmdet's `clamp(min=1)`). The counts of each class's rows (background and
    ignored rows not counted, `sample_weight` ignored) persist as model state
    (saved in `.keras`, `save_weights` and `tf.train.Checkpoint`), updated
    in the backward pass once per `tape.gradient` (once per training step):
    `evaluate()` computes its loss the same way (stored counts plus its
    batch's) and `predict()` never calls it, but neither persists anything.
    One deliberate difference from mmdet: the batch's counts are those of
    the global batch (summed over replicas), where mmdet under DDP keeps one
    set per GPU and never all-reduces it.

    Under `KERAS_BACKEND=jax` the counts are model state once
    `keras_eql.attach(model)` ran (forgotten, `fit()` raises before its
    first step), added in the forward pass of each training step, with the
    same step-`t` semantics; a custom loop uses `stateless_call`.

    Inputs:
        y_true: class ids, the logits' shape without the class axis:
            `0..C-1` (`0..C`, `C` background, with `objectness`); or dense
            one-hot targets of the logits' shape (see Layouts).
        y_pred: raw logits `(..., C)`, `(..., C + 2)` with `objectness`;
            never probabilities.
        sample_weight: optional, the logits' shape without the class axis (or
            broadcastable to it): weights of the rows; they scale the loss,
            not the counts.

    Args:
        num_classes: classes `C`; inferred on the first call when None. Give
            it (and build the loss under `strategy.scope()`) to create the
            counts eagerly.
        p: mitigation exponent (0 disables it).
        q: compensation exponent (0 disables it).
        eps: lower clamp of the target probability in the compensation factor.
        objectness: use the `C + 2` layout above.
        ignore_class: label of dropped rows (Keras mask semantics), or None.
        update_counts: set False to freeze the counts.
        reduction: Keras reduction.
        name: name of the loss.
        dtype: Keras loss dtype (counts are always float32).
        from_logits: must be True (the default): `y_pred` holds raw logits.
            Accepted for the Keras habit; `False` raises.

    Example:
        >>> import keras, numpy as np
        >>> from keras_eql.baselines import SeesawLoss
        >>> loss = SeesawLoss()
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
        >>> model.compile("sgd", loss=loss, jit_compile=True)
        >>> import keras_eql
        >>> _ = keras_eql.attach(model)  # required under JAX, a no-op under TensorFlow
        >>> _ = model.fit(np.ones((16, 8)), np.arange(16) % 4, verbose=0)
        >>> loss.sample_counts().tolist()
        [4.0, 4.0, 4.0, 4.0]
    """

    _binary_targets = True

    def __init__(self, num_classes=None, p=0.8, q=2.0, eps=1e-2, objectness=False,
                 ignore_class=None, update_counts=True, reduction="sum_over_batch_size",
                 name="seesaw_loss", dtype=None, from_logits=True):
        label = type(self).__name__
        self.p = check_hyperparameter(label, "p", p, minimum=0.0)
        self.q = check_hyperparameter(label, "q", q, minimum=0.0)
        self.eps = check_hyperparameter(label, "eps", eps, minimum=0.0, maximum=1.0,
                                        exclusive_minimum=True)
        self.objectness = bool(objectness)
        self._allow_background = self.objectness
        super().__init__(given_counts=None, num_classes=num_classes,
                         update_counts=update_counts, ignore_class=ignore_class,
                         reduction=reduction, name=name, dtype=dtype, from_logits=from_logits)

    def _extra_columns(self):
        return 2 if self.objectness else 0

    def _one_hot_rows(self, targets):
        """`(positives, ok)`: each dense row's class positives, and whether the row is valid.

        Seesaw indexes its factors by the target class: rows must be one-hot
        (with `objectness`: one-hot and `[1, 0]`, or all-zero and `[0, 1]`).
        """
        positives = ops.sum(targets[..., : self.num_classes], axis=-1)
        if not self.objectness:
            return positives, positives == 1.0
        objectness = targets[..., self.num_classes:]
        ok = ((positives <= 1.0) & (objectness[..., 0] == positives)
              & (objectness[..., 1] == 1.0 - positives))
        return positives, ok

    def _dense_ok(self, targets):
        return ops.all(self._one_hot_rows(targets)[1])

    def _dense_checks(self, targets):
        label = type(self).__name__
        positives, ok = self._one_hot_rows(targets)
        if not self.objectness:
            message = "a dense target row has {} positives; expected exactly one (one-hot)."
        else:
            message = ("a dense target row has {} class positives or an objectness pair that "
                       "disagrees; expected a one-hot class row with [1, 0] objectness, or "
                       "an all-zero class row with [0, 1] (background).")
        return _targets.raise_if(label, tf.logical_not(tf.reduce_all(ok)), message,
                                  _targets.first_failure(positives, ok))

    def _row_loss(self, targets, labels, logits):
        num_classes = self.num_classes
        if labels is None:
            class_targets = targets[..., :num_classes]
            labels = ops.where(ops.sum(class_targets, axis=-1) > 0.0,
                               ops.cast(ops.argmax(class_targets, axis=-1), "int32"),
                               num_classes)
        foreground = labels < num_classes
        losses = _baseline_math.seesaw_cross_entropy(
            ops.where(foreground, labels, 0), logits[..., :num_classes],
            class_counts=self._counts_with_batch(targets), p=self.p, q=self.q, eps=self.eps)
        if not self.objectness:
            return losses
        objectness = _backend.sparse_softmax_cross_entropy(
            ops.cast(ops.logical_not(foreground), "int32"), logits[..., num_classes:])
        return objectness + ops.where(foreground, losses, ops.zeros_like(losses))

    def _counts_with_batch(self, targets):
        """Stored counts plus this global batch's (ignored and background rows are zero rows)."""
        class_targets = ops.reshape(ops.cast(targets[..., : self.num_classes], "float32"),
                                    (-1, self.num_classes))
        batch_counts = _backend.sum_over_replicas(ops.sum(class_targets, axis=0))
        return self._counts_tensor() + ops.stop_gradient(batch_counts)

    def get_config(self):
        config = super().get_config()
        config.update(p=self.p, q=self.q, eps=self.eps, objectness=self.objectness)
        return config
