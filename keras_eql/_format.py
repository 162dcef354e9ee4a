"""What the stored statistics mean; shared by every backend's statistics.

Kept apart from `_statistics` (TensorFlow variables) so that a backend
without TensorFlow reads and writes the same format.
"""

# The authors' `pos_neg = pos_grad / (neg_grad + 1e-10)`.
RATIO_EPSILON = 1e-10

# What the stored sums mean. Format 1 (keras_eql 0.1.0, until commit e72f151):
# every loss accumulated the gradient of its reduced output, so Sigmoid-EQL's
# increments carried the reduction's 1/N_t. Format 2: Sigmoid-EQL accumulates
# the per-sample gradients without that normaliser, as the authors do; the
# other losses' sums mean what they meant. A checkpoint written before the
# format existed has no record of it and reads as format 1.
STATISTICS_FORMAT = 2
