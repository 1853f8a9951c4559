"""``--time-budget 5m``: a run sized to end when the budget does, and kept to it while it goes.

The budget counts from the first probe (`descend.training.probes`, run by the plan,
`descend.training.plan`) to the end of the last epoch's validation; loading the data before and
the test pass after are extra. From a step's seconds and an epoch's validation and overhead,
`steps_that_fit` sizes the run::

    time(N) = N x step + validations(N) x (validation + per-epoch overhead)
    N       = the most steps with time(N) <= the seconds left (less `MARGIN` of the budget)

The plan asks it once from the probes; while the run goes, `callbacks.TimeBudget` measures the
run's own steps and epochs and asks again (within the first epoch, after each epoch, and
mid-epoch), revising the schedule's `Horizon` so that a one-cycle schedule anneals to its end
when the budget ends; the last epoch is cut short where a whole one does not fit.
"""

from __future__ import annotations

# The run aims to end this share of the budget early: its later revisions correct the rest.
MARGIN = 0.01
OVERHEAD = 0.5  # seconds per epoch for checkpoints, metrics and curves, until measured

def format_duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes}m{s:02d}s" if minutes else f"{s}s"


def describe_length(total_steps: int, steps_per_epoch: int) -> str:
    """"7 epochs" or "6 epochs and 120 steps": a run's length in words."""
    epochs, steps = divmod(total_steps, steps_per_epoch)
    if not epochs:
        return f"{steps} step(s) of one epoch"
    return f"{epochs} epoch(s)" + (f" and {steps} step(s)" if steps else "")


def steps_that_fit(seconds: float, step: float, fixed: float, steps_per_epoch: int,
                   left_in_epoch: int = 0) -> int:
    """The most training steps N that end within ``seconds``, where each step takes ``step``
    seconds and each epoch ends with ``fixed`` seconds of validation and overhead::

        time(N) = N x step + validations(N) x fixed

    ``left_in_epoch`` > 0: an epoch is under way with that many of its steps left, and its
    validation is still to come; 0: the next step begins a new epoch. The last epoch may be
    cut short: N need not be a whole number of epochs."""
    def cost(n: int) -> float:
        beyond = max(0, n - left_in_epoch)
        validations = (1 if left_in_epoch else 0) + -(-beyond // steps_per_epoch)
        return n * step + validations * fixed

    low, high = 0, max(0, int(seconds / max(step, 1e-9))) + 1
    while low < high:  # the largest n with cost(n) <= seconds; cost grows with n
        mid = (low + high + 1) // 2
        if cost(mid) <= seconds:
            low = mid
        else:
            high = mid - 1
    return low
