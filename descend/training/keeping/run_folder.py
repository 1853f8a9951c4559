"""The run folder: where a run's checkpoints, metrics, plots and log live, and who owns it.

A run locks its folder for as long as it trains (`RunFolder.open`): a second ``descend train``
on the same ``--out`` is refused instead of interleaving its files with the first one's. The
lock is an ``flock`` on ``RUN/.lock``, which the kernel releases when the process ends however
it ends, so a killed run never leaves a stale lock behind.

``--overwrite`` replaces an old run only once the new one has something of its own to keep: the
old files stay untouched while the new run loads its data and trains its first epoch, so a
mistyped ``--data`` costs nothing; when the first ``last.pt`` is written, the old files that
the new run does not write itself are removed (`RunFolder.take_over`).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from descend.config import TrainConfig
from descend.errors import ConfigError
from descend.io import atomic_write_text

RUN_FILES = ("best.pt", "last.pt", "metrics.csv", "curves.png", "config.json", "train.log",
             "skipped.json")
LOCK_NAME = ".lock"


def default_run_dir(cfg: TrainConfig) -> Path:
    data = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path((cfg.data or "cifar10").replace(":", "-")).name)
    from descend.models import DEFAULT_MODEL

    model = (cfg.model or DEFAULT_MODEL).replace(":", "-")
    return Path("runs") / f"{data}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunFolder:
    """A locked run folder; ``replaced`` lists an old run's files that the new one replaces."""

    def __init__(self, path: Path, lock_fd: int | None, replaced: list[str],
                 created: bool = False, owned: bool = True) -> None:
        self.path, self._lock_fd, self.replaced = path, lock_fd, replaced
        self.created = created  # this run made the folder
        self.owned = owned  # this process writes the folder (False: `follow`)
        self.pending: dict[str, str] = {}  # files held back while an old run is still there

    @classmethod
    def follow(cls, path: Path) -> RunFolder:
        """The folder of a run that another process owns (torchrun's rank 0, which opened it):
        this process neither creates, locks nor writes it."""
        return cls(path, None, [], owned=False)

    def write_text(self, name: str, text: str) -> None:
        """Write ``RUN/name`` atomically now, or at `take_over` while an old run is there."""
        if not self.owned:
            return
        if self.replaced:
            self.pending[name] = text
        else:
            atomic_write_text(self.path / name, text)

    @classmethod
    def open(cls, path: Path, *, new: bool, overwrite: bool = False) -> RunFolder:
        """Lock ``path`` for this process; for a ``new`` run, refuse a folder that holds a run
        unless ``overwrite`` (whose files are then replaced by `take_over`)."""
        created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the run folder {path} ({e.strerror}); choose "
                              "another --out") from None
        lock_fd = _lock(path)
        existing = [n for n in RUN_FILES if (path / n).exists()] if new else []
        if existing and not overwrite:
            _unlock(lock_fd)
            raise ConfigError(
                f"{path} already holds a run ({', '.join(existing)}): continue it with "
                f"--resume {path}, choose another --out, or pass --overwrite to replace it"
            )
        return cls(path, lock_fd, existing, created)

    def take_over(self, written: set[str]) -> None:
        """The new run has its first checkpoint: remove what is left of the old run."""
        for name in self.replaced:
            if name not in written and name not in self.pending:
                (self.path / name).unlink(missing_ok=True)
        self.replaced = []
        for name, text in self.pending.items():
            atomic_write_text(self.path / name, text)
        self.pending = {}

    def abandon(self) -> None:
        """Unlock; and remove the folder if this run made it and never wrote a checkpoint."""
        self.close()
        if self.created and not (self.path / "last.pt").exists():
            for name in (*RUN_FILES, LOCK_NAME):
                (self.path / name).unlink(missing_ok=True)
            try:
                self.path.rmdir()
            except OSError:  # something else is in it: leave it
                pass

    def close(self) -> None:
        _unlock(self._lock_fd)
        self._lock_fd = None


def _lock(path: Path) -> int | None:
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        return None
    lock = path / LOCK_NAME
    # O_NOFOLLOW: a planted symlink cannot make the lock open (or create) another file.
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(f"{path} is in use by another `descend train` (process {owner}); "
                          "wait for it to finish or choose another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock
