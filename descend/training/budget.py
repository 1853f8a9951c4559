"""``--time-budget 5m``: a run sized to end when the budget does, and kept to it while it goes.

The budget counts from the first probe (`descend.training.probes`, run by the plan,
`descend.training.plan`) to the end of the last epoch's validation; loading the data before and
the test pass after are extra. From a step's seconds and an epoch's validation and overhead,
`steps_that_fit` sizes the run::

    time(N) = N x step + epochs(N) x overhead + validations(N) x validation
    N       = the most steps with time(N) <= the seconds left (less `MARGIN` of the budget)

(a budgeted run validates its last epoch alone unless ``--val-every`` says otherwise: each pass
is time the budget cannot train).

The plan asks it once from the probes; while the run goes, `callbacks.TimeBudget` measures the
run's own steps and epochs and asks again (within the first epoch, after each epoch, and
mid-epoch), revising the schedule's `Horizon` so that a one-cycle schedule anneals to its end
when the budget ends; the last epoch is cut short where a whole one does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class EpochCosts:
    """What a run's time goes to: seconds per training step, per epoch besides its steps
    (checkpoints, curves, the loader starting) and per validation pass, which every
    ``val_every``-th epoch and the last one make (``val_every`` 0: the last alone)."""

    step: float
    overhead: float
    validation: float
    val_every: int = 1

    def validations(self, first: int, last: int) -> int:
        """Validation passes of epochs ``first``..``last`` (0-based), ``last`` being the run's
        last epoch."""
        k = self.val_every
        periodic = ((last + 1) // k - first // k) if k > 0 else 0  # (e + 1) % k == 0
        return periodic + (0 if k > 0 and (last + 1) % k == 0 else 1)


def steps_that_fit(seconds: float, costs: EpochCosts, steps_per_epoch: int, epoch: int = 0,
                   left_in_epoch: int = 0) -> int:
    """The most training steps N that end within ``seconds``::

        time(N) = N x step + epochs(N) x overhead + validations(N) x validation

    counted from epoch ``epoch``: under way with ``left_in_epoch`` of its steps left (> 0; it
    still ends with its overhead and, if it is validated, its validation), or about to begin
    (0). The last epoch may be cut short: N need not fill whole epochs."""
    def cost(n: int) -> float:
        beyond = max(0, n - left_in_epoch)
        epochs = (1 if left_in_epoch else 0) + -(-beyond // steps_per_epoch)
        if epochs == 0:
            return 0.0
        return (n * costs.step + epochs * costs.overhead
                + costs.validations(epoch, epoch + epochs - 1) * costs.validation)

    low, high = 0, max(0, int(seconds / max(costs.step, 1e-9))) + 1
    while low < high:  # the largest n with cost(n) <= seconds; cost grows with n
        mid = (low + high + 1) // 2
        if cost(mid) <= seconds:
            low = mid
        else:
            high = mid - 1
    return low
