"""The hooks of a training run: `Callback`, the base every concern of a run builds on, and
`CallbackList`, which calls them in order (`descend.training.fitting.callbacks` has the
built-in ones and the order of the hooks)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

if TYPE_CHECKING:
    from descend.training.fitting.run import Run


class Callback:
    """A piece of a training run with a few hooks; every hook does nothing unless overridden."""

    key: str | None = None  # where `state_dict` is kept in last.pt; None: no state to keep
    rank_zero_only: bool = False  # writes or prints: under torchrun, rank 0 alone runs it
    # Where it runs among the others, lowest first (ties: the order given). What the built-in
    # ones need of each other: EMA (10) folds each step into its average first; the records
    # (MetricsLog, TensorBoard: 20) come before the checkpoints, and so do FreezeBackbone (30)
    # and TimeBudget (40), whose states go into last.pt; Checkpoint (50) writes best.pt and
    # last.pt; ReplaceOldRun (60) needs the new run's first last.pt; Progress (70) and
    # EarlyStopping (80) last. A callback of yours runs after them.
    order: ClassVar[int] = 100

    def on_train_start(self, run: Run) -> None: ...
    def on_epoch_start(self, run: Run) -> None: ...
    def on_step_end(self, run: Run) -> None: ...
    def on_validation_start(self, run: Run) -> None: ...
    def on_validation_end(self, run: Run) -> None: ...
    def on_epoch_end(self, run: Run) -> None: ...
    def on_train_end(self, run: Run) -> None: ...

    def averaged_model(self) -> nn.Module | None:
        """A model of averaged weights to validate and keep as best.pt instead of the live
        one (`EMA`'s), or None."""
        return None

    def state_dict(self) -> Any:
        return None

    def load_state_dict(self, state: Any) -> None: ...


class CallbackList:
    """Calls each hook on every callback, in their declared `Callback.order`."""

    def __init__(self, callbacks: Iterable[Callback]) -> None:
        self.callbacks = sorted(callbacks, key=lambda cb: cb.order)

    def __getattr__(self, hook: str) -> Any:
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(run: Run) -> None:
            for cb in self.callbacks:
                getattr(cb, hook)(run)

        return call

    def state_dicts(self) -> dict[str, Any]:
        return {cb.key: cb.state_dict() for cb in self.callbacks if cb.key is not None}

    def load_state_dicts(self, state: dict[str, Any]) -> None:
        for cb in self.callbacks:
            if cb.key is not None and cb.key in state:
                cb.load_state_dict(state[cb.key])
