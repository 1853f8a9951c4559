"""What a crawl did, per class, as data and as the table printed at the end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

MAX_NOTES = 10  # crawl-wide notes printed; a damaged manifest can yield one per line


@dataclass
class ClassSummary:
    """One class: found, fetched and rejected count this run; train and val count the folder."""

    name: str
    target: int
    found: int = 0  # distinct candidate URLs the source gave this run
    fetched: int = 0  # bodies downloaded completely this run
    kept_new: int = 0
    train: int = 0
    val: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # reason kind -> count, this run
    notes: list[str] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return self.train + self.val

    def count_kept(self, split: str) -> None:
        """One more image in the folder's ``split`` ("train" or "val")."""
        if split == "val":
            self.val += 1
        else:
            self.train += 1


@dataclass
class CrawlReport:
    """The result of `descend.crawl.crawl`: one summary per class and where things went."""

    out: Path
    manifest: Path
    classes: list[ClassSummary]
    seconds: float = 0.0
    bytes_downloaded: int = 0
    stopped: str | None = None  # why the crawl ended early, if it did
    notes: list[str] = field(default_factory=list)  # about the whole crawl, e.g. manifest lines

    @property
    def short(self) -> list[ClassSummary]:
        """Classes that ended with fewer images than asked for."""
        return [c for c in self.classes if c.kept < c.target]

    def format(self) -> str:
        """The per-class table, then notes, as printed by ``descend crawl``."""
        head = ("class", "found", "fetched", "kept", "new", "train", "val", "rejected (this run)")
        rows = [
            (c.name, str(c.found), str(c.fetched), f"{c.kept}/{c.target}", str(c.kept_new),
             str(c.train), str(c.val), _reasons(c.rejected))
            for c in self.classes
        ]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
        lines = [
            "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(row, widths))) + "  " + row[-1]
            for row in [head, *rows]
        ]
        for c in self.classes:
            lines += [f"{c.name}: {note}" for note in c.notes]
            if c.rejected["blocked-address"]:
                lines.append(
                    f"{c.name}: {c.rejected['blocked-address']} URLs led to loopback, private or "
                    "link-local addresses and were not fetched; if those machines are yours, "
                    "add --allow-private-addresses"
                )
            if c.kept < c.target and not self.stopped:
                lines.append(
                    f"{c.name}: only {c.kept} of {c.target} images; the source ran out of usable "
                    f"results: add search words (--class {c.name}=WORD1,WORD2) or another --source"
                )
        lines += self.notes[:MAX_NOTES]
        if len(self.notes) > MAX_NOTES:
            lines.append(f"... and {len(self.notes) - MAX_NOTES} more like these")
        if self.stopped:
            lines.append(f"stopped early: {self.stopped}")
        lines.append(
            f"{sum(c.kept for c in self.classes)} images in {self.out} "
            f"({_mib(self.bytes_downloaded)} downloaded in {self.seconds:.1f} s); "
            f"manifest: {self.manifest}"
        )
        return "\n".join(lines)


def _reasons(counts: Counter[str]) -> str:
    if not counts:
        return "0"
    parts = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{sum(counts.values())}: {parts}"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"
