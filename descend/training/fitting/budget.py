"""``--time-budget 5m``: a run sized to end when the budget does, and kept to it while it goes.

The budget counts from the first probe (`descend.training.planning.probes`, run by the
plan, `descend.training.planning.plan`) to the end of the last epoch's validation; loading the
data before, ``--lr auto``'s sweep and the test pass after are extra. From a step's seconds
and an epoch's validation and overhead, `steps_that_fit` sizes the run::

    time(N) = N x step + epochs(N) x overhead + validations(N) x validation
    N       = the most steps with time(N) <= the seconds left (less `MARGIN` of the budget)

(a budgeted run validates its last epoch alone unless ``--val-every`` says otherwise: each pass
is time the budget cannot train).

Everything about the budget lives here: the formula, the `BudgetPlan` the plan makes from the
probes, and the `TimeBudget` callback, the closed loop. While the run goes, `TimeBudget`
measures the run's own steps and epochs and asks again (within the first epoch, after each epoch,
and mid-epoch), revising the schedule's `Horizon` so that a one-cycle schedule anneals to its end
when the budget ends; the last epoch is cut short where a whole one does not fit.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from descend.training.fitting import distributed
from descend.training.fitting.hooks import Callback

if TYPE_CHECKING:
    from descend.training.fitting.run import Run

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


@dataclass(frozen=True)
class BudgetPlan:
    """``--time-budget``: its seconds, when it ends, and what the probes measured."""

    seconds: float
    deadline: float  # time.monotonic() when the budget ends
    costs: EpochCosts  # seconds of a step, an epoch's overhead, a validation pass


class TimeBudget(Callback):
    """``--time-budget``: the closed loop that keeps a run to its budget.

    It measures the run's own steps (the first of each epoch apart: it also starts the loader),
    each epoch's overhead besides them (checkpoints, curves, the first step's extra) and its
    validation pass, and asks `budget.steps_that_fit` how many steps the time left allows: early
    in the first epoch (the plan's probe may be off), mid-epoch (a machine that slowed) and at
    the end of every epoch. An answer that differs by more than `TOLERANCE` revises
    ``run.horizon``: the schedule re-paces what remains and the loop ends where the horizon
    does, the last epoch cut short where a whole one does not fit. Each revision is one log line
    and is kept in ``last.pt`` with the seconds left, so ``--resume`` goes on with the same plan
    and the budget that is left. Past the deadline (a machine that stalled), the epoch under
    way ends at once: the last resort.
    """

    order = 40

    key = "time_budget"
    TOLERANCE = 0.01  # of the planned steps: a smaller change is noise, not news

    def __init__(self, costs: EpochCosts) -> None:
        self.costs = costs  # the plan's probe until the run has measured itself
        self.after = costs.overhead  # seconds from an epoch's end to the next one's start
        self.left: float | None = None  # seconds left when last.pt was written (a resume)
        self.revisions: list[str] = []
        self.epoch_start = self.first_step_end = self.last_step_end = 0.0
        self.epoch_end: float | None = None
        self.steps = 0
        self.checks: set[int] = set()
        self.spent: float | None = None  # seconds of the budget used, once training ends
        self.overheads: list[float] = []  # each epoch's, as measured

    def on_train_start(self, run: Run) -> None:
        if self.left is not None:  # resumed (`plan.plan_resumed` set the deadline from it)
            run.log(f"time budget: {format_duration(self.left)} left of the run's budget")

    def on_epoch_start(self, run: Run) -> None:
        self.epoch_start, self.steps = time.monotonic(), 0
        if self.epoch_end is not None:  # the last epoch's checkpoints, curves and log
            self.after = self.epoch_start - self.epoch_end
        length = min(run.steps_per_epoch, run.horizon.steps_left)
        points = (8, length // 2) if not run.history else (length // 2,)
        self.checks = {n for n in points if 2 <= n < length}

    def on_step_end(self, run: Run) -> None:
        now = self.last_step_end = time.monotonic()
        self.steps += 1
        if self.steps == 1:
            self.first_step_end = now
            return
        if self.steps in self.checks:  # the same steps on every rank under torchrun
            self.measured(step=(now - self.first_step_end) / (self.steps - 1))
            self.revise(run, now, run.epoch.index, min(run.steps_per_epoch - self.steps,
                                                 run.horizon.steps_left),
                        f"{self.steps} steps into epoch {run.epoch.index + 1}")
        # (Under torchrun the ranks would disagree on the moment; they keep the revisions.)
        if (run.deadline is not None and now > run.deadline and run.horizon.steps_left
                and one_process()):
            run.horizon.revise(run.horizon.step)
            run.log("time budget: the deadline has passed; this epoch ends now")

    def on_epoch_end(self, run: Run) -> None:
        now = time.monotonic()
        if self.steps >= 2:
            step = (self.last_step_end - self.first_step_end) / (self.steps - 1)
            validation = float(run.epoch.row.get("val_seconds") or 0.0)
            extra = max(0.0, self.first_step_end - self.epoch_start - step)
            self.overheads.append(extra + now - self.last_step_end - validation + self.after)
            # The median: one slow checkpoint write is not the next epoch's cost.
            self.measured(step=step, overhead=statistics.median(self.overheads),
                          validation=validation or None)
        if run.horizon.steps_left and not run.epoch.stop:
            done = run.epoch.index + 1
            self.revise(run, now, done, 0, f"after epoch {done}",
                        at_least=0 if run.epoch.row.get("val_acc") is not None else 1)
        self.left = None if run.deadline is None else run.deadline - now
        self.epoch_end = now

    def on_train_end(self, run: Run) -> None:
        if run.deadline is not None and run.budget_seconds is not None:
            self.spent = run.budget_seconds - (run.deadline - time.monotonic())

    def measured(self, **figures: float | None) -> None:
        """Replace the estimates with the run's own figures (None: not measured this time)."""
        known: dict[str, Any] = {k: v for k, v in figures.items() if v is not None}
        self.costs = dataclasses.replace(self.costs, **known)

    def revise(self, run: Run, now: float, epoch: int, left_in_epoch: int, when: str,
               at_least: int = 0) -> None:
        """Ask again how many steps fit; ``at_least`` 1 after an epoch left unvalidated (the
        run may not end without the validation of its last epoch)."""
        assert run.deadline is not None and run.budget_seconds is not None
        seconds = run.deadline - now - MARGIN * run.budget_seconds
        more = max(at_least, steps_that_fit(seconds, self.costs, run.steps_per_epoch, epoch,
                                            left_in_epoch))
        total = agreed(run.horizon.step + more)
        if abs(total - run.horizon.total) <= self.TOLERANCE * run.horizon.total:
            return
        was = run.horizon.total
        run.horizon.revise(total)
        c = self.costs
        line = (f"time budget: {format_duration(run.deadline - now)} left {when}; a step "
                f"takes {c.step * 1000:.0f} ms, an epoch's overhead {c.overhead:.1f} s and a "
                f"validation {c.validation:.1f} s, so {total} steps in all (was {was}), "
                f"{describe_length(total, run.steps_per_epoch)}")
        self.revisions.append(line)
        run.log(line)

    def state_dict(self) -> dict[str, Any]:
        return {"costs": dataclasses.asdict(self.costs), "left": self.left,
                "revisions": self.revisions}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.costs = EpochCosts(**state["costs"])
        self.left, self.revisions = state["left"], list(state["revisions"])

    def report(self, run: Run) -> dict[str, Any]:
        """The budget, the seconds of it spent (probes, training and validation), and the
        probe's step against the run's own (the median of its epochs' steps)."""
        assert run.budget is not None
        steps = sorted(r["seconds"] / max(1, round(r["images_per_sec"] * r["seconds"]
                                                   / (run.cfg.batch_size or 1)))
                       for r in run.history[run.start_epoch:]) if run.history else []
        return {"seconds": run.budget.seconds, "spent": self.spent,
                "probe_step": run.budget.costs.step,
                "run_step": steps[len(steps) // 2] if steps else None,
                "revisions": list(self.revisions)}


def agreed(value: Any) -> Any:
    """Rank 0's ``value`` on every rank under torchrun (`distributed.broadcast_object`)."""
    return distributed.broadcast_object(value)


def one_process() -> bool:
    return not distributed.active()
