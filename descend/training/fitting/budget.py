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
probes (with `validation_images`, the rule for a budget too short to validate all of its
images), and the `TimeBudget` callback, the closed loop. While the run goes, `TimeBudget`
measures the run's own steps and epochs and asks again every `CHECK_EVERY` of the budget, in
every epoch including the last, and after each epoch, revising the schedule's `Horizon` so that
a one-cycle schedule anneals to its end when the budget ends: the last epoch is cut short where
a whole one does not fit, and lengthened again (or followed by one more) when the steps get
faster again.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from descend.data.splits import Split, stratified_split
from descend.training.fitting import distributed
from descend.training.fitting.hooks import Callback

if TYPE_CHECKING:
    from descend.training.fitting.run import Run

# The run aims to end this share of the budget early: its later revisions correct the rest.
MARGIN = 0.01
OVERHEAD = 0.5  # seconds per epoch for checkpoints, metrics and curves, until measured
# The closed loop checks after each window of steps that lasts about this share of the budget
# (BENCHMARKS.md B16). A check is three binary searches of the cost formula (microseconds)
# and, under torchrun, one broadcast: about 50 a run cost nothing. Shorter windows would see a
# change of load sooner, but a window of a few steps times noise on a busy machine (MNIST on 2
# shared cores: windows of 8 steps varied by 42%, of 24 by 29%).
CHECK_EVERY = 0.02
FIRST_WINDOW = 7  # steps: the run's first check, at step 8, corrects a probe that was off
WINDOWS = 3  # the step time is the median of the latest windows' (one odd window is not news)
# A validation pass may take at most this share of the seconds a budget has left after its
# probes; a longer one validates on a fixed subset of the split instead (`validation_images`).
VALIDATION_SHARE = 0.25
MIN_VALIDATION = 1000  # images: the accuracy of fewer is too noisy to report (see below)

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
    val_images: int | None = None  # a short budget's validation subset (`validation_images`)


def validation_images(images: int, seconds: float, left: float) -> int:
    """How many of a validation split's ``images`` a budget with ``left`` seconds validates on,
    a pass over all of them taking ``seconds``: all of them where the pass takes at most
    `VALIDATION_SHARE` of what is left, else as many as that share allows, but not fewer than
    `MIN_VALIDATION`.

    Why a subset, and why these numbers: a budget exists to train. A budget too short for its
    validation otherwise plans a step and reports chance (issue 28: a 1m CIFAR-10 run on a
    loaded machine measured a 48 s pass, planned 1 step and reached 13.9%). The accuracy of n
    images has a standard error of sqrt(p (1 - p) / n): at most 1.6 points at n = 1000, 0.8 at
    n = 4000, so a pass on a subset still says how good the model is, and the run trains at
    least 3/4 of what is left (unless even 1,000 images take more). On budgets long enough for
    their data the pass takes far less than the share (B16: 0.2-0.4 s of MNIST's 20 s, 2.9 s of
    CIFAR-10's 20 s), so the rule changes nothing there."""
    if images <= 0 or seconds <= VALIDATION_SHARE * left:
        return images
    fit = int(images * VALIDATION_SHARE * max(0.0, left) / seconds)
    return min(images, max(MIN_VALIDATION, fit))


def validation_subset(split: Split, images: int | None, seed: int) -> Split:
    """The fixed ``images`` of ``split`` a short budget validates on (`validation_images`): the
    same share of every class, drawn with the run's seed (the same subset after --resume); all
    of ``split`` for None."""
    if images is None or images >= len(split):
        return split
    _, kept = stratified_split(split.labels, images / len(split), seed)
    return split.subset(kept)


class TimeBudget(Callback):
    """``--time-budget``: the closed loop that keeps a run to its budget.

    It measures the run's own steps in windows of about `CHECK_EVERY` of the budget (the first
    step of each epoch apart: it also starts the loader; the run's first window is
    `FIRST_WINDOW` steps), each epoch's overhead besides them (checkpoints, curves, the first
    step's extra) and its validation pass. After each window, in every epoch, the last
    included, and at the end of every epoch, it asks `budget.steps_that_fit` how many steps the
    time left allows at the median step of the latest `WINDOWS` windows (an epoch's overhead
    counts its start, its end and its checkpoints after, so a check mid-epoch charges what is
    ahead of it alone). The answer revises
    ``run.horizon`` where it differs from the plan by more than `TOLERANCE` and by more than the
    windows' spread (the answers at their slowest and at their fastest step lie on the same
    side of the plan): a machine whose steps jitter does not rock the plan back and forth, one
    that changed speed does. The schedule re-paces what remains and the loop ends where the
    horizon does. Steps that get slower cut the last epoch short; steps that get faster again
    give the time back: the last epoch grows again up to a whole one, then one more follows.
    The horizon's last step is a check too (a plan shorter than a window still corrects
    itself). Each revision is one log line and is kept in ``last.pt`` with the seconds left, so
    ``--resume`` goes on with the same plan and the budget that is left. Past the deadline (a
    machine that stalled), the epoch under way ends at once: the last resort.

    ``clock`` is `time.monotonic` (the plan's deadline is on it); a simulation gives its own.
    """

    order = 40

    key = "time_budget"
    TOLERANCE = 0.01  # of the planned steps: a smaller change is noise, not news

    def __init__(self, plan: BudgetPlan, clock: Callable[[], float] = time.monotonic) -> None:
        self.costs = plan.costs  # the plan's probe until the run has measured itself
        self.val_images = plan.val_images
        self.clock = clock
        # Seconds from an epoch's end (this hook) to the next one's start: its checkpoints,
        # curves and log. The plan's whole overhead until the run has measured one.
        self.after = self.costs.overhead
        self.left: float | None = None  # seconds left when last.pt was written (a resume)
        self.revisions: list[str] = []
        self.epoch_start = self.first_step_end = self.last_step_end = 0.0
        self.epoch_end: float | None = None
        self.steps = 0  # of the epoch under way
        self.window_start, self.window_steps = 0.0, 0  # the window under way
        self.every = FIRST_WINDOW  # steps a window takes (each check sets the next one's)
        self.windows: deque[float] = deque(maxlen=WINDOWS)  # the latest windows' step seconds
        self.checks = 0
        self.spent: float | None = None  # seconds of the budget used, once training ends
        # Each epoch's overhead, as measured: its first step's extra, its end, its own `after`
        # (the latest counts the one before until the next epoch starts and tells).
        self.overheads: list[float] = []
        self.ending: float | None = None  # the latest epoch's seconds from its last step on

    def on_train_start(self, run: Run) -> None:
        if self.left is not None:  # resumed (`plan.plan_resumed` set the deadline from it)
            run.log(f"time budget: {format_duration(self.left)} left of the run's budget")

    def on_epoch_start(self, run: Run) -> None:
        self.epoch_start, self.steps = self.clock(), 0
        if self.epoch_end is not None:  # the last epoch's checkpoints, curves and log
            after = self.epoch_start - self.epoch_end
            if self.overheads:
                self.overheads[-1] += after - self.after
                self.measured(overhead=self.overhead())
            self.after = after

    def on_step_end(self, run: Run) -> None:
        now = self.last_step_end = self.clock()
        self.steps += 1
        if self.steps == 1:
            self.first_step_end = self.window_start = now
            self.window_steps = 0
        else:
            self.window_steps += 1
        # The same steps on every rank under torchrun: the window's length and the horizon are
        # agreed. A check on an epoch's last step is the epoch's end's (`on_epoch_end`).
        last = not run.horizon.steps_left
        if self.window_steps >= self.every or (self.window_steps > 0 and last):
            self.close_window(now)
            index = run.epoch.index
            if self.steps < run.steps_per_epoch:
                # The formula charges the epoch under way a whole overhead; its start is behind
                # it, and its end will take what the last epoch's did (the first epoch's
                # overhead also warmed the kernels up: it is no measure of an end).
                ahead = (self.costs.overhead - self.start_extra() if self.ending is None
                         else self.ending + self.after)
                self.revise(run, now, index, run.steps_per_epoch - self.steps,
                            f"{self.steps} steps into epoch {index + 1}",
                            credit=max(0.0, self.costs.overhead - ahead))
            elif last:  # the horizon ends with the epoch: one more may fit before its end
                self.revise(run, now, index + 1, 0, f"at the end of epoch {index + 1}",
                            credit=-self.after)
        # (Under torchrun the ranks would disagree on the moment; they keep the revisions.)
        if (run.deadline is not None and now > run.deadline and run.horizon.steps_left
                and one_process()):
            run.horizon.revise(run.horizon.step)
            run.log("time budget: the deadline has passed; this epoch ends now")

    def overhead(self) -> float:
        """An epoch's overhead: the median of the epochs' (one slow checkpoint write is not the
        next epoch's cost), the first's left out once there are others (its first step also
        warmed up the kernels, once)."""
        return statistics.median(self.overheads[1:] or self.overheads)

    def start_extra(self) -> float:
        """Seconds the epoch's first step took beyond a step: the loader starting."""
        return max(0.0, self.first_step_end - self.epoch_start - self.costs.step)

    def close_window(self, now: float) -> None:
        """The window under way ends at ``now``: its step time joins the latest ones, and their
        median becomes the step the plan counts on."""
        self.windows.append((now - self.window_start) / self.window_steps)
        self.window_start, self.window_steps = now, 0
        self.measured(step=statistics.median(self.windows))

    def on_epoch_end(self, run: Run) -> None:
        now = self.clock()
        if self.steps >= 2:
            if self.window_steps >= max(2, self.every // 2):  # long enough to count
                self.close_window(self.last_step_end)
            elif not self.windows:  # an epoch too short for a window: its own mean
                self.measured(step=(self.last_step_end - self.first_step_end) / (self.steps - 1))
            validation = float(run.epoch.row.get("val_seconds") or 0.0)
            self.ending = now - self.last_step_end - validation
            self.overheads.append(self.start_extra() + self.ending + self.after)
            self.measured(overhead=self.overhead(), validation=validation or None)
        self.window_steps = 0  # the next epoch's first step starts a new window
        if run.horizon.steps_left and not run.epoch.stop:
            done = run.epoch.index + 1
            # This epoch's checkpoints are still ahead, outside the epochs the formula charges.
            self.revise(run, now, done, 0, f"after epoch {done}",
                        at_least=0 if run.epoch.row.get("val_acc") is not None else 1,
                        credit=-self.after)
        self.left = None if run.deadline is None else run.deadline - now
        self.epoch_end = now

    def on_train_end(self, run: Run) -> None:
        if run.deadline is not None and run.budget_seconds is not None:
            self.spent = run.budget_seconds - (run.deadline - self.clock())

    def measured(self, **figures: float | None) -> None:
        """Replace the estimates with the run's own figures (None: not measured this time)."""
        known: dict[str, Any] = {k: v for k, v in figures.items() if v is not None}
        self.costs = dataclasses.replace(self.costs, **known)

    def revise(self, run: Run, now: float, epoch: int, left_in_epoch: int, when: str,
               at_least: int = 0, credit: float = 0.0) -> None:
        """Ask again how many steps fit, from epoch ``epoch`` with ``left_in_epoch`` of its
        steps still to come (the whole rest of it, wherever the horizon ends now: a revision
        may lengthen it). ``credit``: seconds the formula charges that are spent already (or,
        negative, ones to come that it does not charge). ``at_least`` 1 after an epoch left
        unvalidated (the run may not end without the validation of its last epoch). Sets the
        next window's length, about `CHECK_EVERY` of the budget at the step measured."""
        assert run.deadline is not None and run.budget_seconds is not None
        self.checks += 1
        seconds = run.deadline - now - MARGIN * run.budget_seconds + credit

        def total_at(step: float) -> int:
            costs = dataclasses.replace(self.costs, step=step)
            return run.horizon.step + max(at_least, steps_that_fit(
                seconds, costs, run.steps_per_epoch, epoch, left_in_epoch))

        total, planned = total_at(self.costs.step), run.horizon.total
        if abs(total - planned) <= self.TOLERANCE * planned or (
                self.windows and total_at(max(self.windows)) <= planned
                <= total_at(min(self.windows))):
            total = planned  # within the tolerance, or the windows' own spread: noise
        every = max(2, round(CHECK_EVERY * run.budget_seconds / max(self.costs.step, 1e-9)))
        total, self.every = agreed((total, every))  # rank 0's answer, on every rank
        if total == run.horizon.total:
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
                "revisions": self.revisions, "val_images": self.val_images}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.costs = EpochCosts(**state["costs"])
        self.left, self.revisions = state["left"], list(state["revisions"])
        self.val_images = state["val_images"]

    def report(self, run: Run) -> dict[str, Any]:
        """The budget, the seconds of it spent (probes, training and validation), the probe's
        step against the run's own (the median of its epochs' steps), how often the loop
        checked and what it revised, and the validation images of a budget too short for all
        of them (None: all)."""
        assert run.budget is not None
        steps = sorted(r["seconds"] / max(1, round(r["images_per_sec"] * r["seconds"]
                                                   / (run.cfg.batch_size or 1)))
                       for r in run.history[run.start_epoch:]) if run.history else []
        return {"seconds": run.budget.seconds, "spent": self.spent,
                "probe_step": run.budget.costs.step,
                "run_step": steps[len(steps) // 2] if steps else None,
                "checks": self.checks, "revisions": list(self.revisions),
                "val_images": self.val_images}


def agreed(value: Any) -> Any:
    """Rank 0's ``value`` on every rank under torchrun (`distributed.broadcast_object`)."""
    return distributed.broadcast_object(value)


def one_process() -> bool:
    return not distributed.active()
