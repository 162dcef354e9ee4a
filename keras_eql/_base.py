"""`EqualizationLoss`: the Keras side shared by every gradient-driven loss.

It turns labels into targets, owns the `GradientStatistics`, hands the
fused row losses of `keras_eql._fused` a backward hook that folds the
gradient's per-class sums into the statistics, and makes the statistics
model state (`.keras`, `save_weights`, `BackupAndRestore`,
`tf.train.Checkpoint`). Subclasses only say how a row's loss is computed
(`_row_loss` for TensorFlow's fused kernels, `_forward_rows` in `keras.ops`
for the JAX and PyTorch backends, see `keras_eql._backend`).
"""

import warnings

import keras
import numpy as np
from keras.src.backend.common.masking import get_keras_mask
from keras.src.losses.loss import reduce_weighted_values, squeeze_or_expand_to_same_rank

from keras_eql import _backend, _checks
from keras_eql._backend._forward_state import call_with_state
from keras_eql._format import STATISTICS_FORMAT

if _backend.FORWARD_STATISTICS:
    # No TensorFlow: the statistics are updated by `keras_eql._forward`.
    _TRACKING_BASES = ()
else:
    import tensorflow as tf

    from keras_eql import _targets
    from keras_eql._statistics import all_reduce_sum

    # The statistics' `tf.Variable`s are tracked through the loss (checkpoints).
    _TRACKING_BASES = (tf.__internal__.tracking.AutoTrackable,)

_STATE_KEYS = ("positive_gradients", "negative_gradients", "steps")
_FORMAT_KEY = "statistics_format"


class EqualizationLoss(keras.losses.Loss, *_TRACKING_BASES):
    """Base class of the losses driven by accumulated per-class gradients.

    Not used directly: see `SigmoidEQL`, `SoftmaxEQL`, `EqualizedFocalLoss`
    and `EqualizedQualityFocalLoss`. Every subclass shares these arguments.

    Inputs (every subclass):
        y_true: sparse labels (the logits' shape without the class axis) or
            dense targets of the logits' shape; each loss says which values.
        y_pred: raw logits `(..., C)` of any leading shape, never
            probabilities.
        sample_weight: optional, the logits' shape without the class axis (or
            broadcastable to it): weights of the rows; they scale the loss and
            the statistics.

    Args:
        num_classes: number of foreground classes `C`; inferred from the
            logits on the first call when `None`. Give it (and build the loss
            under `strategy.scope()`) to create the statistics eagerly.
        ignore_class: sparse label whose rows are dropped from the loss and
            the statistics (Keras semantics: they leave the
            `sum_over_batch_size` denominator), or `None`.
        background: the sigmoid losses only: whether label `C` means
            background (an all-negative row, the detection convention, the
            default). `False` for classification without a background, where
            label `C` is a mistake (e.g. 1-indexed labels) and an error.
        decay: optional factor in (0, 1] applied to the accumulated sums
            before each update (exponential forgetting, beyond the paper);
            `None` keeps the paper's plain sums.
        update_statistics: set to `False` to freeze the statistics (e.g. for
            fine-tuning); the loss still uses them.
        reduction: Keras reduction; the statistics see its factor.
        name: name of the loss.
        dtype: Keras loss dtype (float32 by default, also under mixed
            precision). Statistics are always float32.
        from_logits: must be True (the default): `y_pred` holds raw logits.
            Accepted for the Keras habit; `False` raises. A `y_pred` made by
            a softmax or sigmoid activation draws a warning.
        targets: the sigmoid losses only: `"any"` (default) takes every
            dense target; `"one_hot"` promises dense rows with at most one
            positive (one-hot, or one-hot times a quality score, as KerasHub's
            RetinaNet passes them) and runs them as class ids, 1.1-1.4x the
            ids' cost instead of 1.4-1.9x on a 2-core CPU (BENCHMARKS.md). A
            row with two positives is then an error (under XLA: a NaN step,
            recorded like a bad label). Sparse labels are unaffected. Under
            the JAX and PyTorch backends the argument is accepted and
            changes nothing (every dense row is computed exactly there; a
            multi-hot row is not rejected).

    The statistics are updated once per `tape.gradient` through the loss (once
    per training step), never by `evaluate()`, `predict()` or a plain call,
    and summed over replicas once. Which gradient they accumulate depends on
    the loss, as in the authors' code:

    * `SoftmaxEQL`, `EqualizedFocalLoss`, `EqualizedQualityFocalLoss`: the
      gradient of this loss's output with respect to the logits, sample
      weights and the reduction's per-step normaliser included (the
      authors' hooks see their `loss_weight` and normaliser).
    * `SigmoidEQL`: `sum_i s_i |dE_ij/dz_ij|` over the counted rows, `s_i`
      the row's sample weight (`class_weight` included) and `E_ij` the
      element loss: the gradient of the plain sum over the batch (Eq. 3-4),
      without the reduction's normaliser, so every sample counts the same
      whatever the size of its batch (eqlv2's collector).

    Neither includes the mixed-precision loss scale, compile `loss_weights`
    or Keras's division by the number of replicas. A constant
    `sample_weight` therefore plays the role of the authors' `loss_weight`
    (it cancels in the ratio).

    Under `KERAS_BACKEND=jax` the same sums are computed analytically in the
    forward pass of a differentiated call (`keras_eql._forward`), the
    statistics are model state once `keras_eql.attach(model)` ran, and a
    custom loop uses `stateless_call`. Under `KERAS_BACKEND=torch` the same
    sums are added when autograd records the call (gradients enabled, logits
    that require one), in variables the loss owns; no `attach` is needed.
    """

    # Subclass settings.
    _initial_ratio = 1.0
    _clip_ratio = False
    _allow_background = True
    _binary_targets = True
    # True: the statistics collect the per-sample gradients (`row_weights`),
    # without the reduction's normaliser; False: the gradient of the output.
    _per_sample_statistics = False
    # The oldest `STATISTICS_FORMAT` whose stored sums this loss continues.
    _minimum_statistics_format = 1
    # True: a NaN/inf logit makes its row's loss NaN, which the fused kernel
    # checks in its backward pass (`_fused._binary_rows`); False: the
    # statistics' update reads the logits' finiteness itself.
    _rows_nan_on_non_finite_logits = False

    def __init__(self, *, num_classes=None, ignore_class=None, background=None, decay=None,
                 update_statistics=True, reduction="sum_over_batch_size",
                 name=None, dtype=None, from_logits=True, targets="any"):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        label = type(self).__name__
        _backend.check_supported(label)
        self.from_logits = _checks.check_from_logits(label, from_logits)
        # The sigmoid losses expose it (and put it in their config).
        self.targets = _checks.check_target_route(label, targets)
        if background is not None:
            if not isinstance(background, (bool, np.bool_)):
                raise ValueError(f"{label}: `background` must be True or False, got {background!r}.")
            self._allow_background = bool(background)
        if num_classes is not None:
            if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
                raise ValueError(f"{label}: `num_classes` must be a positive integer, got {num_classes!r}.")
            num_classes = int(num_classes)
        if ignore_class is not None and (isinstance(ignore_class, bool) or int(ignore_class) != ignore_class):
            raise ValueError(f"{label}: `ignore_class` must be an integer or None, got {ignore_class!r}.")
        self.num_classes = num_classes
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.decay = _checks.check_hyperparameter(
            label, "decay", decay, minimum=0.0, maximum=1.0,
            exclusive_minimum=True, allow_none=True)
        self.update_statistics = bool(update_statistics)
        self._statistics = None
        if num_classes is not None:
            self._build(num_classes)

    # -- subclass interface -------------------------------------------------
    def _extra_columns(self):
        """Logit columns beyond the C classes (the objectness column)."""
        return 0

    def _row_loss(self, targets, logits, ratio, on_column_sums, row_weights=None):
        """Per-row float32 loss `(...)`, with the statistics' backward hook.

        Args:
            targets: int32 class ids `(...)` (ignored rows as background, or
                as 0 without a background label) or float32 targets `(..., K)`.
            logits: `(..., K)` logits in their own dtype.
            ratio: the statistics' ratio `(C,)` (no gradient).
            on_column_sums: to be called in the backward pass with this
                step's `(C,)` sums of |gradient| over positives and negatives
                (it returns the update ops to depend on), or None.
            row_weights: for `_per_sample_statistics` losses, the `(...)`
                float32 weights `s_i` of the rows in the column sums (0 on
                ignored rows) in place of the upstream gradient; else None.
        """
        raise NotImplementedError

    def _normalizer(self, targets, valid):
        """Divisor of the row losses (1 unless a subclass normalises)."""
        return None

    def _forward_rows(self, targets, logits, statistics):
        """`keras_eql._rows`'s `(rows, local, positive)` for this loss (forward backends).

        Args:
            targets: float32 dense targets `(..., K)`.
            logits: float32 logits `(..., K)` (zero on ignored rows).
            statistics: the statistics (the ratio and indicators to use).
        """
        raise NotImplementedError

    def _forward_normalizer(self, targets, valid):
        """`_normalizer` in `keras.ops`, from dense targets (forward backends)."""
        return None

    # -- statistics ---------------------------------------------------------
    def _build(self, num_classes):
        self.num_classes = int(num_classes)
        self._statistics = _backend.make_statistics(
            self.num_classes,
            initial_ratio=self._initial_ratio,
            clip_ratio=self._clip_ratio,
            decay=self.decay,
            minimum_format=self._minimum_statistics_format,
            name=self.name,
        )
        # Not tracked (a plain object): a diagnostic, not model state.
        self._bad_labels = (None if _backend.FORWARD_STATISTICS
                            else _targets.BadLabelMonitor(self.name))

    def _check_width(self, width):
        """Build the statistics for logits of `width` columns, or check that they match."""
        num_classes = width - self._extra_columns()
        if self._statistics is None:
            self._build(num_classes)
        elif num_classes != self.num_classes:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': logits have {width} columns, i.e. "
                f"{num_classes} classes, but its statistics are for "
                f"{self.num_classes} classes. Use one loss instance per head.")

    @property
    def statistics(self):
        """The `GradientStatistics` (None until the number of classes is known)."""
        return self._statistics

    def gradient_statistics(self):
        """Per-class statistics as NumPy arrays.

        Returns:
            `{"positive": (C,), "negative": (C,), "ratio": (C,)}`: accumulated
            positive and negative gradient magnitudes and the ratio the loss
            uses on its next step.
        """
        if self._statistics is None:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' has no statistics yet: pass "
                "`num_classes` or call the loss once.")
        return self._statistics.numpy()

    def reset_statistics(self):
        """Forget everything accumulated: the next step is the plain base loss."""
        if self._statistics is not None:
            self._statistics.reset()

    # -- Keras Loss API -----------------------------------------------------
    def __call__(self, y_true, y_pred, sample_weight=None):
        # `keras.losses.Loss.__call__`, except that the rows' sample weights
        # and input mask also reach `call`: per-sample statistics need them.
        if _backend.FORWARD_STATISTICS:
            from keras_eql import _forward

            return _forward.call(self, y_true, y_pred, sample_weight)
        _targets.check_logits_dtype(type(self).__name__, y_pred)
        input_mask = get_keras_mask(y_pred)
        with tf.name_scope(self.name):
            y_pred = keras.ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = keras.ops.convert_to_tensor(y_true, dtype=self.dtype)
            losses = self._call(y_true, y_pred, sample_weight, input_mask)
            mask = get_keras_mask(losses)
            if input_mask is not None:
                mask = input_mask if mask is None else input_mask & mask
            loss = reduce_weighted_values(losses, sample_weight=sample_weight, mask=mask,
                                          reduction=self.reduction, dtype=self.dtype)
        if self.reduction not in (None, "none") and loss.shape.rank:
            # Keras returns an empty batch unreduced; its loss is 0.
            loss = tf.reduce_sum(loss)
        if self._records_upstream():
            loss = self._statistics.record_upstream(loss)
        return loss

    def _records_upstream(self):
        return (self.update_statistics and self._statistics is not None
                and not self._per_sample_statistics
                and self.reduction not in (None, "none"))

    def call(self, y_true, y_pred):
        """Per-row losses (Keras API); statistics rows weigh 1 here."""
        if _backend.FORWARD_STATISTICS:
            from keras_eql import _forward

            return _forward.row_losses(self, y_true, y_pred)  # never updates the statistics
        return self._call(y_true, y_pred, None, None)

    def _row_weights(self, rows, sample_weight, input_mask, valid):
        """`(...)` float32 `s_i` of each row: sample weight x input mask x not ignored."""
        weights = tf.ones_like(rows, tf.float32)
        if sample_weight is not None:
            # Keras's own broadcasting of sample weights onto the row losses.
            sample_weight = tf.cast(tf.convert_to_tensor(sample_weight), tf.float32)
            weights, sample_weight = squeeze_or_expand_to_same_rank(weights, sample_weight)
            weights = weights * sample_weight
            weights = tf.reshape(tf.broadcast_to(weights, tf.shape(rows)), tf.shape(rows))
        if input_mask is not None:
            weights = weights * tf.cast(input_mask, tf.float32)
        if valid is not None:
            weights = tf.where(valid, weights, 0.0)
        return tf.stop_gradient(weights)

    def _call(self, y_true, y_pred, sample_weight, input_mask):
        label = type(self).__name__
        if y_pred.shape.rank is None or y_pred.shape[-1] is None:
            raise ValueError(f"{label}: the class axis of the logits must be static, got shape {y_pred.shape}.")
        self._check_width(y_pred.shape[-1])
        self._check_distribution()
        quality = None
        if self.targets == "one_hot" and not _targets.is_sparse(y_true, y_pred):
            # Dense one-hot rows become one id per row (and the target there,
            # EQFL's quality) and take the sparse labels' fused path: no
            # branch on the targets' layout (see `_fused`).
            targets, values, checks, verdict = _targets.one_hot_targets(
                label, y_true, y_pred, binary=self._binary_targets)
            with tf.control_dependencies(checks):
                logits = tf.identity(y_pred)
            valid = None
            if not self._binary_targets:
                quality = values
        else:
            # Sparse labels stay ids: the fused losses never build a one-hot.
            targets, _, valid, logits, verdict = _targets.prepare(
                label, y_true, y_pred, num_classes=self.num_classes,
                ignore_class=self.ignore_class, allow_background=self._allow_background,
                binary=self._binary_targets, one_hot=False)
        on_column_sums = None
        if self.update_statistics:
            # A bad label (possible only under XLA) drops the step like a NaN.
            inputs_ok = tf.stop_gradient(verdict.ok)
            if not self._rows_nan_on_non_finite_logits:
                inputs_ok = _inputs_finite(y_pred, valid) & inputs_ok
            on_column_sums = self._column_sums_hook(inputs_ok)
        if valid is not None:
            # NaN/inf logits of ignored rows must not leak into the gradient.
            logits = tf.where(valid[..., None], logits, tf.zeros_like(logits))
        ratio = tf.stop_gradient(self._statistics.ratio())
        extra = {} if quality is None else {"quality": quality}
        if on_column_sums is not None and self._per_sample_statistics:
            extra["row_weights"] = self._row_weights(y_pred[..., 0], sample_weight, input_mask,
                                                     valid)
        losses = self._row_loss(targets, logits, ratio, on_column_sums, **extra)
        normalizer = self._normalizer(targets, valid)
        if normalizer is not None:
            losses = losses / normalizer
        with tf.control_dependencies([self._bad_labels.record(verdict)]):
            losses = _targets.nan_unless(verdict.ok, losses)
        return _targets.mask_rows(losses, valid, y_pred.dtype)

    def bad_label(self):
        """The first bad label or target a compiled step met since the last call, or None.

        Under `jit_compile=True` (and always under JAX and PyTorch) the label
        checks cannot raise; such a step returns a NaN loss, changes neither
        the weights (zero gradient) nor the statistics, and is recorded here,
        in training and evaluation. `GradientStatisticsLogger` raises it as
        an error. Under JAX the record is made in a step that carries the
        statistics (a model passed to `keras_eql.attach`, `stateless_call`)
        or in an eager call.
        """
        if self._statistics is None:
            return None
        if self._bad_labels is None:
            return self._statistics.pop_bad_label()
        return self._bad_labels.pop()

    def expected_labels(self):
        """What this loss accepts as sparse labels, as its errors say it."""
        return _checks.expected_labels(
            self.num_classes, ignore_class=self.ignore_class,
            allow_background=self._allow_background)

    def _column_sums_hook(self, inputs_finite):
        """`on_column_sums` for this step: the sums go to the statistics."""
        unscale = self._records_upstream()

        def on_column_sums(positive, negative):
            return self._statistics.accumulate_sums(
                positive, negative, unscale=unscale, inputs_finite=inputs_finite)

        return on_column_sums

    def _check_distribution(self):
        context = tf.distribute.get_replica_context()
        synced = context is not None and context.num_replicas_in_sync > 1
        distributed = isinstance(self._statistics.positive, tf.distribute.DistributedValues)
        if synced and not distributed:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': its statistics were created "
                "outside the strategy that trains with it. Construct the loss (and "
                "compile) under `strategy.scope()`, or leave `num_classes=None`.")

    def stateless_call(self, statistics_variables, y_true, y_pred, sample_weight=None):
        """The loss and its updated statistics as values, for a custom JAX training loop.

        Keras's stateless pattern (as `Layer.stateless_call`): the statistics
        are read from `statistics_variables` and their update is returned, not
        written. Differentiate the returned loss w.r.t. the logits (or the
        weights) with `jax.value_and_grad(..., has_aux=True)`: the update is
        made only then, as in `fit`.

        Args:
            statistics_variables: values of `loss.statistics.variables`, in order.
            y_true, y_pred, sample_weight: as for calling the loss.

        Returns:
            `(loss, statistics_variables)`: the loss value and the new values.

        Example:
            >>> import jax, numpy as np, keras_eql  # doctest: +SKIP
            >>> loss = keras_eql.SoftmaxEQL(num_classes=3)  # doctest: +SKIP
            >>> state = [v.value for v in loss.statistics.variables]  # doctest: +SKIP
            >>> (value, state), grad = jax.value_and_grad(  # doctest: +SKIP
            ...     lambda z: loss.stateless_call(state, np.array([0, 2]), z), has_aux=True
            ... )(np.zeros((2, 3), "float32"))
        """
        if self._statistics is None:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' has no statistics yet: pass "
                "`num_classes` or call the loss once.")
        return call_with_state(self, self._statistics, statistics_variables, y_true, y_pred,
                               sample_weight)

    # -- saving -------------------------------------------------------------
    def save_own_variables(self, store):
        """Keras saving hook: the statistics are model state."""
        if self._statistics is None:
            return
        state = self._statistics
        stats = state.numpy()
        store["positive_gradients"] = stats["positive"]
        store["negative_gradients"] = stats["negative"]
        store["steps"] = np.asarray(state.step_count(), np.float32)
        store[_FORMAT_KEY] = np.asarray(STATISTICS_FORMAT, np.float32)

    def load_own_variables(self, store):
        """Keras loading hook; builds the statistics from the stored shape.

        Statistics saved in a format this loss cannot continue from (a
        Sigmoid-EQL file written before format 2, see `STATISTICS_FORMAT`)
        are not loaded: the loss starts from its initial state, with a
        warning. Everything else in the file loads as usual.
        """
        keys = list(store.keys())
        if "positive_gradients" not in keys:
            return
        positive = np.asarray(store["positive_gradients"])
        if self._statistics is None:
            self._build(positive.shape[-1])
        elif positive.shape[-1] != self.num_classes:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': stored statistics have "
                f"{positive.shape[-1]} classes, the loss has {self.num_classes}.")
        stored_format = int(np.asarray(store[_FORMAT_KEY])) if _FORMAT_KEY in keys else 1
        if stored_format < self._minimum_statistics_format:
            warnings.warn(
                f"{type(self).__name__} '{self.name}': the saved statistics "
                f"({float(np.asarray(store['steps'])):g} steps) are in format "
                f"{stored_format}, whose sums carry each step's 1/N; this version "
                f"accumulates per-sample sums (format {STATISTICS_FORMAT}) and cannot "
                "rescale them, so they are reset: the next steps start from the "
                "initial ratio. Model weights are loaded as usual.", stacklevel=2)
            self._statistics.reset()
            return
        self._statistics.assign(
            positive, np.asarray(store["negative_gradients"]), np.asarray(store["steps"]))

    def get_config(self):
        config = super().get_config()
        config.update(
            dtype=self._dtype_policy.name,
            num_classes=self.num_classes,
            ignore_class=self.ignore_class,
            decay=self.decay,
            update_statistics=self.update_statistics,
            from_logits=self.from_logits,
        )
        return config


def _inputs_finite(logits, valid):
    """Scalar bool: every logit of a counted row is finite (no gradient).

    A NaN or inf logit makes its row's sum, hence the total, non-finite: one
    plain reduction of the logits, with no `(..., K)` mask or element-wise
    producer that XLA's CPU backend would write out before reducing. Float32
    logits near 1e34 could overflow the sum too; that step then leaves the
    statistics alone, the safe side.
    """
    row_sums = tf.reduce_sum(tf.cast(logits, tf.float32), -1)
    if valid is not None:
        row_sums = tf.where(valid, row_sums, 0.0)
    return tf.stop_gradient(tf.math.is_finite(tf.reduce_sum(row_sums)))


def count_positive_rows(targets, valid, num_classes):
    """Global number of rows with a positive among the C classes, at least 1.

    Summed over replicas: the detectors' normalizer (the authors divide by
    the positives averaged over GPUs and average the gradients, which is the
    same as dividing each replica's sum by the global count, as here).

    Args:
        targets: float targets `(..., K)` or integer class ids `(...)`.
        valid: bool mask of the counted rows, or None.
        num_classes: C (an objectness column beyond it is not a class).
    """
    if targets.dtype.is_integer:
        positive_rows = (targets >= 0) & (targets < num_classes)
    else:
        positive_rows = tf.reduce_any(targets[..., :num_classes] > 0.0, axis=-1)
    if valid is not None:
        positive_rows = positive_rows & valid
    (count,) = all_reduce_sum(tf.reduce_sum(tf.cast(positive_rows, tf.float32)))
    return tf.maximum(count, 1.0)
