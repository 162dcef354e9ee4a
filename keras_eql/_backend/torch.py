"""PyTorch: the statistics are loss-owned Keras variables, assigned in the forward pass.

Keras's PyTorch trainer is stateful: a variable the loss assigns inside a
training step keeps its new value, so the statistics need not be model
state and `keras_eql.attach` has nothing to do. The update itself is JAX's
(`keras_eql._forward`, the statistics of `_forward_state`): the analytic
per-class sums are added in the forward pass when `being_differentiated`
says the loss is computed for a gradient.

One PyTorch specific: the update writes the variables in place, while the
step's autograd graph may still hold the values it read (the ratio feeds
the loss). A saved tensor changed in place makes `backward()` fail, and a
graph compiled by `torch.compile` (`jit_compile=True`) saves its inputs,
the variables themselves. So the statistics are read as copies and
written, both outside any compiled graph (`torch.compiler.disable`): the
graph sees the copies as inputs and never a variable that changes.
"""

import torch

from keras_eql._backend._forward_state import ForwardCounts, ForwardStatistics

FORWARD_STATISTICS = True


def being_differentiated(y_pred):
    """Whether autograd records this call: gradients on, and logits that carry one.

    Keras's trainer computes the training loss with gradients enabled and
    `evaluate()` under `torch.no_grad()`; `predict()` computes no loss. In a
    custom loop the loss updates the statistics once per call on logits that
    require a gradient, so call it once per step and validate under
    `torch.no_grad()`. Symbolic tensors (Keras's build) carry no gradient.
    """
    return torch.is_grad_enabled() and bool(getattr(y_pred, "requires_grad", False))


class TorchStatistics(ForwardStatistics):
    """`ForwardStatistics` whose reads and writes stay out of compiled graphs (see above)."""

    @torch.compiler.disable
    def _read(self):
        return tuple(variable.value.detach().clone()
                     for variable in (self.positive, self.negative, self.steps, self.format))

    @torch.compiler.disable
    def record_bad_label(self, ok, value):
        with torch.no_grad():
            super().record_bad_label(ok.detach(), value.detach())

    @torch.compiler.disable
    def accumulate_sums(self, positive, negative, *, inputs_finite=None):
        with torch.no_grad():
            super().accumulate_sums(positive.detach(), negative.detach(),
                                    inputs_finite=None if inputs_finite is None
                                    else inputs_finite.detach())


class TorchCounts(ForwardCounts):
    """`ForwardCounts` whose reads and writes stay out of compiled graphs (see above)."""

    @torch.compiler.disable
    def read(self):
        return self.counts.value.detach().clone()

    @torch.compiler.disable
    def add(self, step_counts):
        with torch.no_grad():
            super().add(step_counts.detach())


def make_counts(num_classes, *, name):
    """The online class counts of a baseline loss, owned by the loss."""
    return TorchCounts(num_classes, name=name)


def make_statistics(num_classes, **options):
    """A `TorchStatistics` owned by the loss (saved through its `save_own_variables`)."""
    return TorchStatistics(num_classes, **options)


def attach_losses(model):
    """Nothing to do: the trainer keeps what the loss assigns. Returns the model."""
    return model
