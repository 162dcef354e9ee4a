"""JAX: the online class counts are model state held by a Metric, updated in the forward pass.

As `ForwardStatistics` (`keras_eql._backend.jax`): a JAX training step
keeps only the state the model tracks, so the counts are the variable of a
`keras.metrics.Metric` that `keras_eql.attach(model)` makes a model
attribute, and the loss adds a step's counts in its forward pass when the
trace-time gate (`being_differentiated`) says it is being differentiated:
once per training step, never in `evaluate()` or `predict()`.
"""

import keras
import numpy as np
from keras import ops
from keras.src.backend.common.stateless_scope import get_stateless_scope


class ForwardCounts(keras.metrics.Metric):
    """Cumulative per-class sample counts of a baseline loss, as model state.

    The interface of the TensorFlow `ClassCounts` (`numpy`, `read`,
    `reset`, `assign`) plus `add`, the forward-pass update. Keras's metric
    protocol is inert: `reset_state()` (every epoch, every `evaluate()`)
    keeps the counts, `result()` logs nothing.

    Args:
        num_classes: number of classes `C`.
        name: the loss's name (errors name it).
    """

    def __init__(self, num_classes, *, name):
        super().__init__(name=f"{name}_class_counts")
        self.num_classes = int(num_classes)
        self.loss_name = name
        # Set by `attach`; checked in Keras's symbolic build (see `check_attached`).
        self.attached = False
        self.counts = self.add_variable((self.num_classes,), "zeros", "float32",
                                        name="class_counts")

    # -- Keras's metric protocol: inert --------------------------------------
    def update_state(self, *args, **kwargs):
        """Not used: the loss updates the counts."""

    def reset_state(self):
        """Keeps the counts: Keras resets metrics every epoch and in `evaluate()`."""

    def result(self):
        return {}

    # -- state -----------------------------------------------------------------
    def numpy(self):
        return np.asarray(ops.convert_to_numpy(self.counts), np.float32)

    def read(self):
        """The counts as a tensor without gradient (the step's value inside a training step)."""
        return ops.stop_gradient(ops.convert_to_tensor(self.counts))

    def reset(self):
        self.counts.assign(np.zeros([self.num_classes], np.float32))

    def assign(self, counts):
        self.counts.assign(np.asarray(counts, np.float32))

    def _unattached_message(self):
        return (f"loss '{self.loss_name}': its class counts are not part of the model's state, "
                "so a training step would lose their update. Under the JAX backend call "
                "`keras_eql.attach(model)` after `model.compile(...)` and again after "
                "`keras.models.load_model(...)` (`keras_eql.load_model` does it), or pass "
                "`update_counts=False`.")

    def check_attached(self):
        """Raise if no model was ever given these counts (`keras_eql.attach`).

        Called in Keras's symbolic build, before the JAX trainer takes the
        model's variables out of the model (see `ForwardStatistics`).
        """
        if not self.attached:
            raise RuntimeError(self._unattached_message())

    def add(self, step_counts):
        """Add one step's `(C,)` counts (inside a step that maps the variable)."""
        scope = get_stateless_scope()
        if scope is None:
            raise RuntimeError(
                f"loss '{self.loss_name}': under JAX its class counts are updated inside a "
                "Keras training step (model.fit, train_on_batch) of a model passed to "
                "keras_eql.attach(model), or through loss.stateless_call(...) in a custom "
                "loop; this call differentiates the loss outside both, so its update would be "
                "lost. Pass update_counts=False to differentiate it without counting.")
        if scope.get_current_value(self.counts) is None:
            raise RuntimeError(self._unattached_message())
        self.counts.assign(ops.convert_to_tensor(self.counts) + ops.cast(step_counts, "float32"))
