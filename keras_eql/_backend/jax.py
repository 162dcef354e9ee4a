"""JAX: the statistics are model state held by a Metric, updated in the forward pass.

A JAX training step is a pure function of the model's state: a variable the
loss assigns is dropped unless the trainer maps it, and a backward pass
cannot have side effects. So (see docs/trials/jax-backend/REPORT.md):

* the statistics are a `keras.metrics.Metric` (`ForwardStatistics`, shared
  with PyTorch in `_forward_state`); the
  model tracks it once `keras_eql.attach(model)` made it a model attribute,
  and the trainer then carries its variables through every step, under jit
  and `keras.distribution` alike;
* `keras_eql._forward` adds the analytic per-class sums in the forward pass,
  only when `being_differentiated(y_pred)`: a `jax.custom_jvp` probe whose
  JVP rule runs at trace time under `jax.grad`/`value_and_grad` and never
  under a plain `jit` or an eager call (`evaluate()`, `predict()`);
* an update whose variables the running step does not map raises at trace
  time, naming what to call, instead of being lost.
"""

import jax
from keras.src.backend.common.stateless_scope import get_stateless_scope

from keras_eql._backend import _forward_state

FORWARD_STATISTICS = True
_ATTRIBUTE = "_keras_eql_statistics"


def being_differentiated(y_pred):
    """Whether `y_pred` is being differentiated by JAX right now (decided at trace time).

    The JVP rule of a `jax.custom_jvp` identity runs when it is applied to a
    JVP or linearize tracer, i.e. inside `jax.grad`/`value_and_grad`/`vjp`
    (Keras's training step); under `jit` alone the call is only staged, and
    on a concrete array it is a plain call. The probe's output is unused.
    """
    fired = []

    @jax.custom_jvp
    def probe(value):
        return value

    @probe.defjvp
    def _probe_jvp(primals, tangents):
        fired.append(True)
        return primals[0], tangents[0]

    probe(y_pred)
    return bool(fired)


class _CarriedState:
    """What JAX's statistics and class counts share: `attach` marks them, a step must carry them.

    `attached` is set by `attach` and checked in Keras's symbolic build; an
    update outside a stateless scope that maps the variable raises instead
    of being lost. A subclass names its state (`what`), the variable a step
    must carry (`_carried`) and the loss argument that turns updates off.
    """

    what = opt_out = None
    attached = False

    def _carried(self):
        raise NotImplementedError

    def check_attached(self):
        """Raise if no model was ever given this state (`keras_eql.attach`).

        Called from Keras's symbolic build, which `fit()` and `evaluate()`
        run before their first step: an error raised later, while tracing
        the step, would come after the JAX trainer has taken the model's
        variables out of the model (it does not put them back on an error).
        """
        if not self.attached:
            raise RuntimeError(self._unattached_message())

    def _unattached_message(self):
        return (f"loss '{self.loss_name}': its {self.what} are not part of the model's state, "
                "so a training step would lose their update. Under the JAX backend call "
                "`keras_eql.attach(model)` after `model.compile(...)` and again after "
                "`keras.models.load_model(...)` (`keras_eql.load_model` does it), or pass "
                f"`{self.opt_out}`.")

    def check_update(self):
        """Raise if the running JAX step does not carry the state: its update would be lost."""
        scope = get_stateless_scope()
        if scope is None:
            raise RuntimeError(
                f"loss '{self.loss_name}': under JAX its {self.what} are updated inside a Keras "
                "training step (model.fit, train_on_batch) of a model passed to "
                "keras_eql.attach(model), or through loss.stateless_call(...) in a custom "
                "loop; this call differentiates the loss outside both, so its update would be "
                f"lost. Pass {self.opt_out} to differentiate it without them.")
        if scope.get_current_value(self._carried()) is None:
            raise RuntimeError(self._unattached_message())


class ForwardStatistics(_CarriedState, _forward_state.ForwardStatistics):
    """`_forward_state.ForwardStatistics` that knows whether a JAX step carries it."""

    what, opt_out = "statistics", "update_statistics=False"

    def _carried(self):
        return self.positive

    def can_record(self, ok):
        """A bad label is recorded where the step carries the state, or in an eager call.

        Never an error: the record is a diagnostic (a step whose loss is not
        differentiated, or a model without `attach` and with
        `update_statistics=False`, still gets its NaN loss).
        """
        scope = get_stateless_scope()
        if scope is None:  # traced outside a step: assigning would leak a tracer
            return not isinstance(ok, jax.core.Tracer)
        return scope.get_current_value(self._carried()) is not None


class ForwardCounts(_CarriedState, _forward_state.ForwardCounts):
    """`_forward_state.ForwardCounts` that knows whether a JAX step carries it."""

    what, opt_out = "class counts", "update_counts=False"

    def _carried(self):
        return self.counts


def make_statistics(num_classes, **options):
    return ForwardStatistics(num_classes, **options)


def make_counts(num_classes, *, name):
    return ForwardCounts(num_classes, name=name)


def _output_width(model, output_name):
    """The class axis of the output `output_name` (None: the only one), or None if unknown."""
    from keras_eql._model_losses import _symbolic_outputs

    outputs = _symbolic_outputs(model)
    if outputs is None:
        # A Sequential model never called has `outputs` (its inner graph) but no `output`.
        outputs = getattr(model, "outputs", None)
        if not outputs:
            return None
    if isinstance(outputs, dict):
        output = outputs.get(output_name)
    elif isinstance(outputs, (list, tuple)):
        names = list(getattr(model, "output_names", None) or [])
        if output_name in names and len(names) == len(outputs):
            output = outputs[names.index(output_name)]
        else:
            output = outputs[0] if len(outputs) == 1 else None
    else:
        output = outputs
    shape = getattr(output, "shape", None)
    return None if not shape or shape[-1] is None else int(shape[-1])


def _known_width(model, output_name, loss, what):
    """The width of the output `loss` trains, or an error saying to pass `num_classes`."""
    width = _output_width(model, output_name)
    if width is None:
        raise ValueError(
            f"keras_eql.attach: {type(loss).__name__} '{loss.name}' has no {what} yet and the "
            "model's output does not say its number of classes; pass `num_classes` to the loss.")
    return width


def _loss_state(model, output_name, loss):
    """The state `attach` makes model state for `loss` (built from the output's width), or None."""
    from keras_eql._base import EqualizationLoss
    from keras_eql._baseline_base import CountingLoss

    if isinstance(loss, EqualizationLoss):
        if loss.statistics is None:
            loss._check_width(_known_width(model, output_name, loss, "statistics"))
        return loss.statistics
    if isinstance(loss, CountingLoss) and loss._given_counts is None:
        if loss.counts is None:
            width = _known_width(model, output_name, loss, "class counts")
            loss._classes_known(width - loss._extra_columns())
        return loss.counts
    return None


def attach_losses(model):
    """Make the state of every keras_eql loss of `model` part of its state (JAX).

    The Equalization Losses' statistics and the class counts of the
    baselines that count online (Seesaw, Logit-Adjusted, Balanced Softmax).
    """
    from keras_eql._model_losses import _output_losses

    if not getattr(model, "compiled", False):
        raise ValueError(
            "keras_eql.attach(model): compile the model first; attach its losses after "
            "`model.compile(...)` (and again after `keras.models.load_model(...)`).")
    states = []
    for output_name, loss in _output_losses(model):
        state = _loss_state(model, output_name, loss)
        if state is not None and not any(state is seen for seen in states):
            states.append(state)
    for index, state in enumerate(states):
        attribute = f"{_ATTRIBUTE}_{index}"
        current = getattr(model, attribute, None)
        if current is state:
            continue
        if current is not None:
            delattr(model, attribute)
        # Layer.__setattr__ tracks the Metric: its variables join
        # `model.metrics_variables`, which the JAX trainer carries.
        setattr(model, attribute, state)
        state.attached = True
    return model
