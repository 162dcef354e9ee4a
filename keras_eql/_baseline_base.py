"""The Keras side shared by the comparison baselines.

`BaselineLoss` turns labels into targets with the core conventions of
`keras_eql._targets` (sparse `0..C-1` classes, `C` background where the loss
has one, `ignore_class` rows masked with Keras mask semantics; dense targets
of the logits' shape) and leaves the row loss to its subclass.

The losses driven by per-class sample counts (Seesaw, and Logit-Adjusted /
Balanced Softmax without given priors) derive from `CountingLoss`, which
owns the counts (`keras_eql._backend.make_counts`: a `tf.Variable` filled in
the backward pass under TensorFlow, a Metric filled in the forward pass of a
differentiated call under JAX; either way once per training step, never by
`evaluate()` or `predict()`) and makes them model state (`.keras`,
`save_weights`, `tf.train.Checkpoint`; under JAX after `keras_eql.attach`).

Under TensorFlow the targets come from `keras_eql._targets` (eager errors,
graph assertions, XLA verdicts); under JAX from `keras_eql._forward.prepare`
(shape errors at once, a bad value makes the step's loss NaN, as under
TensorFlow's XLA). The row losses are the same `keras.ops` code.
"""

import keras
import numpy as np
from keras import ops
from keras.src.backend.common.masking import get_keras_mask
from keras.src.backend.common.symbolic_scope import in_symbolic_scope
from keras.src.losses.loss import reduce_weighted_values

from keras_eql import _backend, _checks
from keras_eql._backend._forward_state import call_with_state

if _backend.FORWARD_STATISTICS:
    _TRACKING_BASES = ()
else:
    import tensorflow as tf

    from keras_eql import _targets

    # The counts' `tf.Variable` is tracked through the loss (checkpoints).
    _TRACKING_BASES = (tf.__internal__.tracking.AutoTrackable,)

COUNTS_KEY = "class_counts"


def check_ignore_class(loss_name, ignore_class):
    if ignore_class is not None and (
            isinstance(ignore_class, bool) or not isinstance(ignore_class, (int, np.integer))):
        raise ValueError(f"{loss_name}: `ignore_class` must be an integer or None, got {ignore_class!r}.")
    return None if ignore_class is None else int(ignore_class)


def check_num_classes(loss_name, num_classes):
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"{loss_name}: `num_classes` must be a positive integer, got {num_classes!r}.")
    return int(num_classes)


class BaselineLoss(keras.losses.Loss):
    """Label handling, validation and masking shared by the baselines.

    Subclasses set `_allow_background` (label `C` is an all-negative row),
    `_binary_targets` (dense targets must be 0/1) and implement
    `_row_loss(targets, labels, logits)`; they may add `_extra_columns()`,
    `_classes_known(num_classes)` and `_dense_checks(targets)`.
    """

    _allow_background = False
    _binary_targets = False

    def __init__(self, *, ignore_class, reduction, name, dtype, from_logits=True):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.ignore_class = check_ignore_class(type(self).__name__, ignore_class)
        self.from_logits = _checks.check_from_logits(type(self).__name__, from_logits)

    # -- subclass interface -------------------------------------------------
    def _extra_columns(self):
        """Logit columns beyond the C classes (objectness)."""
        return 0

    def _classes_known(self, num_classes):
        """Called with C on every call: build state or check the width."""

    def _check_class_columns(self, num_classes, expected, built_from):
        """Raise unless the logits have the `expected` C of a loss built from per-class values.

        Args:
            num_classes: C of the logits.
            expected: the number of per-class values the loss was built from.
            built_from: what those values are, ending the message
                "logits have N columns but ...".

        Raises:
            ValueError: `num_classes != expected`.
        """
        if num_classes != expected:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': logits have {num_classes} columns but {built_from}.")

    def _dense_checks(self, targets):
        """Extra assertion ops on validated dense targets (TensorFlow)."""
        return []

    def _dense_ok(self, targets):
        """Scalar bool: validated dense targets also pass `_dense_checks` (JAX), or None."""
        return None

    def _row_loss(self, targets, labels, logits):
        """Per-row float32 loss `(...)`; `labels` is None for dense targets."""
        raise NotImplementedError

    def _on_targets(self, logits, targets, valid, labels_ok):
        """Hook between validation and the loss (the counting losses capture here)."""
        return logits

    def _updates_state(self):
        """Whether a differentiated call updates state (`_forward_state()`) (JAX)."""
        return False

    def _forward_state(self):
        """That state (None until it is built)."""
        return None

    # -- Keras Loss API -----------------------------------------------------
    def __call__(self, y_true, y_pred, sample_weight=None):
        if _backend.FORWARD_STATISTICS:
            return self._forward_call(y_true, y_pred, sample_weight)
        _targets.check_logits_dtype(type(self).__name__, y_pred)
        return super().__call__(y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        if _backend.FORWARD_STATISTICS:
            return self._forward_rows(y_true, y_pred)[0]
        label = type(self).__name__
        if y_pred.shape.rank is None or y_pred.shape[-1] is None:
            raise ValueError(f"{label}: the class axis of the logits must be static, got shape {y_pred.shape}.")
        width = y_pred.shape[-1]
        num_classes = width - self._extra_columns()
        if num_classes < 1:
            raise ValueError(
                f"{label}: logits of shape {y_pred.shape} leave no class columns "
                f"({self._extra_columns()} extra columns expected).")
        self._classes_known(num_classes)
        targets, labels, valid, logits, verdict = _targets.prepare(
            label, y_true, y_pred, num_classes=num_classes,
            ignore_class=self.ignore_class, allow_background=self._allow_background,
            binary=self._binary_targets)
        if labels is None:
            # The checks of the dense targets run before the loss.
            with tf.control_dependencies(self._dense_checks(targets)):
                logits = tf.identity(logits)
        logits = self._on_targets(logits, targets, valid, verdict.ok)
        if valid is not None:
            # NaN/inf logits of ignored rows must not leak into the gradient.
            logits = tf.where(valid[..., None], logits, tf.zeros_like(logits))
        losses = self._row_loss(targets, labels, tf.cast(logits, tf.float32))
        # Under XLA a bad label cannot raise: NaN loss, zero gradient.
        losses = _targets.nan_unless(verdict.ok, losses)
        return _targets.mask_rows(losses, valid, y_pred.dtype)

    # -- forward-statistics backends (JAX) ------------------------------------
    def _class_columns(self, y_pred):
        """C of logits `y_pred` (static class axis, enough columns), after `_classes_known`."""
        label = type(self).__name__
        if len(y_pred.shape) == 0 or y_pred.shape[-1] is None:
            raise ValueError(f"{label}: the class axis of the logits must be static, got shape "
                             f"{tuple(y_pred.shape)}.")
        num_classes = y_pred.shape[-1] - self._extra_columns()
        if num_classes < 1:
            raise ValueError(
                f"{label}: logits of shape {tuple(y_pred.shape)} leave no class columns "
                f"({self._extra_columns()} extra columns expected).")
        self._classes_known(num_classes)
        return num_classes

    def _forward_rows(self, y_true, y_pred):
        """`(rows, valid, step_counts)` of one call, in `keras.ops`.

        `rows` are in the loss's dtype, 0 on ignored rows and NaN on a step
        with a bad label or dense target (as under TensorFlow's XLA);
        `step_counts` are the `(C,)` class targets of the counted rows, 0 on
        such a step.
        """
        from keras_eql import _forward

        label = type(self).__name__
        _checks.check_logits_dtype(label, y_pred)
        y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        num_classes = self._class_columns(y_pred)
        sparse = _forward._is_sparse(y_true, y_pred)
        targets, valid, ok, _ = _forward.prepare(
            label, y_true, y_pred, num_classes=num_classes, ignore_class=self.ignore_class,
            allow_background=self._allow_background, binary=self._binary_targets)
        logits = y_pred
        if valid is not None:
            # Ignored rows: all-zero targets (as TensorFlow's), zero logits
            # (their NaN/inf must not reach the gradient); masked below.
            targets = ops.where(valid[..., None], targets, 0.0)
            logits = ops.where(valid[..., None], y_pred, 0.0)
        if not sparse:
            dense_ok = self._dense_ok(targets)
            if dense_ok is not None:
                ok = ok & dense_ok
        rows = self._row_loss(targets, None, ops.cast(logits, "float32"))
        rows = ops.cast(ops.where(ok, rows, float("nan")), self.dtype)
        if valid is not None:
            rows = ops.where(valid, rows, 0.0)
        class_targets = ops.reshape(targets[..., :num_classes], (-1, num_classes))
        step_counts = ops.where(ok, ops.sum(ops.stop_gradient(class_targets), axis=0), 0.0)
        return rows, valid, step_counts

    def _forward_call(self, y_true, y_pred, sample_weight):
        """`__call__` where state is updated in the forward pass (JAX)."""
        input_mask = get_keras_mask(y_pred)
        differentiated = self._updates_state() and _backend.being_differentiated(y_pred)
        rows, valid, step_counts = self._forward_rows(y_true, y_pred)
        state = self._forward_state()  # built by the first call when num_classes was None
        if self._updates_state() and in_symbolic_scope():
            # Keras's symbolic build: the last moment to say that `attach` is
            # missing while the model still holds its variables.
            state.check_attached()
        mask = valid
        if input_mask is not None:
            mask = input_mask if mask is None else (ops.cast(input_mask, "bool") & mask)
        value = reduce_weighted_values(rows, sample_weight=sample_weight, mask=mask,
                                       reduction=self.reduction, dtype=self.dtype)
        if self.reduction not in (None, "none") and len(value.shape):
            value = ops.sum(value)  # Keras returns an empty batch unreduced; its loss is 0.
        if differentiated:
            # After the rows read the counts: step t uses those of steps 0..t-1.
            state.add(step_counts)
        return value

    def get_config(self):
        config = super().get_config()
        config.update(dtype=self._dtype_policy.name, ignore_class=self.ignore_class,
                      from_logits=self.from_logits)
        return config


class CountingLoss(BaselineLoss, *_TRACKING_BASES):
    """A baseline whose per-class sample counts are given or counted online.

    With `given_counts` the loss is stateless. Otherwise its counts are
    created (`keras_eql._backend.make_counts`: in the constructor when
    `num_classes` is given, else on the first call, which under TensorFlow
    also works under a `tf.distribute` strategy, or by `keras_eql.attach`
    under JAX) and updated once per training step. Step `t`
    uses the counts of steps `0..t-1`, exactly like the EQL statistics (Seesaw
    adds step `t`'s own batch on top, as mmdet does).
    """

    def __init__(self, *, given_counts, num_classes, update_counts, **kwargs):
        super().__init__(**kwargs)
        label = type(self).__name__
        self.num_classes = check_num_classes(label, num_classes)
        self.update_counts = bool(update_counts)
        self._given_counts = given_counts
        self._counts = None
        if given_counts is not None:
            if self.num_classes is not None and self.num_classes != given_counts.size:
                raise ValueError(
                    f"{label}: num_classes={self.num_classes} but {given_counts.size} "
                    "per-class values were given.")
            self.num_classes = int(given_counts.size)
        elif self.num_classes is not None:
            self._build(self.num_classes)

    def _build(self, num_classes):
        self.num_classes = int(num_classes)
        self._counts = _backend.make_counts(self.num_classes, name=self.name)

    def _classes_known(self, num_classes):
        label = type(self).__name__
        if self._given_counts is None and self._counts is None:
            self._build(num_classes)
        elif num_classes != self.num_classes:
            raise ValueError(
                f"{label} '{self.name}': logits have {num_classes} class columns but the "
                f"loss has {self.num_classes} classes. Use one loss instance per head.")
        if self._counts is not None and not _backend.FORWARD_STATISTICS:
            context = tf.distribute.get_replica_context()
            synced = context is not None and context.num_replicas_in_sync > 1
            if synced and not isinstance(self._counts.counts, tf.distribute.DistributedValues):
                raise ValueError(
                    f"{label} '{self.name}': its counts were created outside the strategy "
                    "that trains with it. Construct the loss (and compile) under "
                    "`strategy.scope()`, or leave `num_classes=None`.")

    def _on_targets(self, logits, targets, valid, labels_ok):
        if self._counts is None or not self.update_counts:
            return logits
        return self._counts.capture(logits, targets[..., : self.num_classes],
                                    tf.stop_gradient(labels_ok))

    def _updates_state(self):
        return self._given_counts is None and self.update_counts

    def _forward_state(self):
        return self._counts

    def _counts_tensor(self):
        """The counts step `t` uses: given, or accumulated up to step `t-1`."""
        if self._given_counts is not None:
            return ops.convert_to_tensor(np.asarray(self._given_counts, np.float32))
        return self._counts.read()

    @property
    def counts(self):
        """The counts' state (None for given counts or before the first call)."""
        return self._counts

    def sample_counts(self):
        """Per-class sample counts the next step uses, as a float NumPy array."""
        if self._given_counts is not None:
            return np.array(self._given_counts)
        if self._counts is None:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' has no counts yet: pass "
                "`num_classes` or call the loss once.")
        return self._counts.numpy()

    def reset_counts(self):
        """Forget the counted samples (no-op for given counts)."""
        if self._counts is not None:
            self._counts.reset()

    def stateless_call(self, counts_variables, y_true, y_pred, sample_weight=None):
        """The loss and its updated counts as values, for a custom JAX training loop.

        As `EqualizationLoss.stateless_call`: the counts are read from
        `counts_variables` and their update is returned, not written; it is
        made only when the loss is differentiated (`jax.value_and_grad(...,
        has_aux=True)`), as in `fit`.

        Args:
            counts_variables: values of `loss.counts.variables`, in order.
            y_true, y_pred, sample_weight: as for calling the loss.

        Returns:
            `(loss, counts_variables)`: the loss value and the new values.

        Example:
            >>> import jax, numpy as np, keras_eql  # doctest: +SKIP
            >>> loss = keras_eql.SeesawLoss(num_classes=3)  # doctest: +SKIP
            >>> state = [v.value for v in loss.counts.variables]  # doctest: +SKIP
            >>> (value, state), grad = jax.value_and_grad(  # doctest: +SKIP
            ...     lambda z: loss.stateless_call(state, np.array([0, 2]), z), has_aux=True
            ... )(np.zeros((2, 3), "float32"))
        """
        if self._counts is None:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' has no counts to update: pass "
                "`num_classes` (counts given as an argument are not state).")
        return call_with_state(self, self._counts, counts_variables, y_true, y_pred,
                               sample_weight)

    # -- saving -------------------------------------------------------------
    def save_own_variables(self, store):
        """Keras saving hook: online counts are model state."""
        if self._counts is not None:
            store[COUNTS_KEY] = self._counts.numpy()

    def load_own_variables(self, store):
        """Keras loading hook; builds the counts from the stored shape."""
        if COUNTS_KEY not in list(store.keys()):
            return
        counts = np.asarray(store[COUNTS_KEY])
        if self._counts is None and self._given_counts is None:
            self._build(counts.shape[-1])
        elif self._counts is None or counts.shape[-1] != self.num_classes:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': stored counts have "
                f"{counts.shape[-1]} classes, the loss has {self.num_classes}"
                + (" given values." if self._counts is None else "."))
        self._counts.assign(counts)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, update_counts=self.update_counts)
        return config
