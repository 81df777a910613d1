"""measure_d90: the smallest subspace dimension reaching a fraction of full fine-tuning.

Method (docs/search.md). A baseline (full fine-tuning averaged over seeds, or a given value) sets the
threshold tau = fraction * baseline. Every trial trains for its whole budget, selects its checkpoint
on the validation split and reports on the test split, so no trial's number is cut short at tau or
chosen on the data it is reported on. Points are means over seeds of those reported numbers.

Search mode: a coarse log-spaced pass evaluates dimensions in increasing order until the first
point whose mean reaches tau, plus the next grid point above it, stepping down below the grid if its
first point already passes; then bisection in log d between the last failing and the first passing
point narrows the bracket to the requested relative precision. Curve mode evaluates every grid point.

d90 is the smallest evaluated d whose mean passes; the bracket is (largest failing d below it, d90];
the crossing interpolates log-linearly inside it; the interval is the union of the bracket and a
bootstrap percentile interval of the crossing over seeds, given only with at least three seeds.

The package is three layers: :mod:`.stats` (pure numbers), :mod:`.sweep` (which trial next, and where its
result comes from) and :mod:`.measure` (the phases), with :mod:`.result` the record they produce.
"""

from intrinsic_dim.search.measure import DEFAULT_DIMS, DEFAULT_RANKS, chance_level, measure_d90, trial_templates
from intrinsic_dim.search.result import D90Result, method_of
from intrinsic_dim.search.stats import BaselineError, passes, threshold

__all__ = ["DEFAULT_DIMS", "DEFAULT_RANKS", "BaselineError", "D90Result", "chance_level", "measure_d90", "method_of", "passes",
           "threshold", "trial_templates"]
