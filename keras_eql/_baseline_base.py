"""The Keras side shared by the comparison baselines.

`BaselineLoss` turns labels into targets with the core conventions of
`keras_eql._targets` (sparse `0..C-1` classes, `C` background where the loss
has one, `ignore_class` rows masked with Keras mask semantics; dense targets
of the logits' shape) and leaves the row loss to its subclass.

`ClassCounts` is the state of the losses driven by per-class sample counts
(Seesaw, and Logit-Adjusted / Balanced Softmax without given priors). It
follows `GradientStatistics`: a float32 `ON_WRITE` variable with
`ONLY_FIRST_REPLICA` aggregation, filled in the backward pass of an identity
on the logits (once per `tape.gradient`, so never by `evaluate()` or
`predict()`), with the step's counts summed over replicas explicitly.
`CountingLoss` owns it and makes it model state (`.keras`, `save_weights`,
`tf.train.Checkpoint`).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_eql import _checks, _targets
from keras_eql._statistics import _variable, all_reduce_sum, identity_with_backward_updates

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
        """Extra assertion ops on validated dense targets."""
        return []

    def _row_loss(self, targets, labels, logits):
        """Per-row float32 loss `(...)`; `labels` is None for dense targets."""
        raise NotImplementedError

    def _on_targets(self, logits, targets, valid, labels_ok):
        """Hook between validation and the loss (the counting losses capture here)."""
        return logits

    # -- Keras Loss API -----------------------------------------------------
    def __call__(self, y_true, y_pred, sample_weight=None):
        _targets.check_logits_dtype(type(self).__name__, y_pred)
        return super().__call__(y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
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

    def get_config(self):
        config = super().get_config()
        config.update(dtype=self._dtype_policy.name, ignore_class=self.ignore_class,
                      from_logits=self.from_logits)
        return config


class ClassCounts(tf.__internal__.tracking.AutoTrackable):
    """Cumulative per-class sample counts, summed over replicas.

    Args:
        num_classes: number of classes `C`.
        name: prefix of the variable name.
    """

    def __init__(self, num_classes, *, name):
        self.num_classes = int(num_classes)
        self.counts = _variable(
            np.zeros([self.num_classes], np.float32), f"{name}/{COUNTS_KEY}",
            tf.VariableSynchronization.ON_WRITE)

    def numpy(self):
        return np.asarray(self.counts.numpy())

    def reset(self):
        self.counts.assign(np.zeros([self.num_classes], np.float32))

    def assign(self, counts):
        self.counts.assign(np.asarray(counts, np.float32))

    def capture(self, logits, class_targets, labels_ok=True):
        """Identity on `logits` whose backward pass adds this step's counts.

        Args:
            logits: the loss's logits.
            class_targets: `(..., C)` float targets of the counted rows (zero
                rows for background and ignored rows; soft targets count
                fractionally).
            labels_ok: scalar bool; False (a bad label under XLA) adds nothing.

        Returns:
            `logits`, unchanged; its gradient passes through unchanged.
        """
        class_targets = tf.stop_gradient(tf.cast(class_targets, tf.float32))

        def updates_for(upstream):
            local = tf.reduce_sum(tf.reshape(class_targets, [-1, self.num_classes]), axis=0)
            local = tf.where(labels_ok, local, 0.0)
            (step_counts,) = all_reduce_sum(local)
            return [self.counts.assign_add(step_counts)]

        return identity_with_backward_updates(logits, updates_for)


class CountingLoss(BaselineLoss, tf.__internal__.tracking.AutoTrackable):
    """A baseline whose per-class sample counts are given or counted online.

    With `given_counts` the loss is stateless. Otherwise a `ClassCounts` is
    created (in the constructor when `num_classes` is given, else on the first
    call with a callable initial value, which also works under a
    `tf.distribute` strategy) and updated once per training step. Step `t`
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
        self._counts = ClassCounts(self.num_classes, name=self.name)

    def _classes_known(self, num_classes):
        label = type(self).__name__
        if self._given_counts is None and self._counts is None:
            self._build(num_classes)
        elif num_classes != self.num_classes:
            raise ValueError(
                f"{label} '{self.name}': logits have {num_classes} class columns but the "
                f"loss has {self.num_classes} classes. Use one loss instance per head.")
        if self._counts is not None:
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

    def _counts_tensor(self):
        """The counts step `t` uses: given, or accumulated up to step `t-1`."""
        if self._given_counts is not None:
            return tf.constant(self._given_counts, tf.float32)
        return tf.stop_gradient(tf.convert_to_tensor(self._counts.counts))

    @property
    def counts(self):
        """The `ClassCounts` state (None for given counts or before the first call)."""
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
