"""What a crawl did, per class, as data (`CrawlReport.to_dict`, ``--json``) and as the table
printed at the end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A results page that a source could not read: not an error of the network, nor a refusal.
UNKNOWN_SHAPE = "unknown-shape"
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
    # What each results page asked for this run gave: "results", "empty", or why it failed
    # (a `FetchError` kind such as "http-403" or "timeout", or `UNKNOWN_SHAPE`) -> pages.
    searches: Counter[str] = field(default_factory=Counter)

    @property
    def kept(self) -> int:
        return self.train + self.val

    def count_kept(self, split: str) -> None:
        """One more image in the folder's ``split`` ("train" or "val")."""
        if split == "val":
            self.val += 1
        else:
            self.train += 1

    def why_none(self, source: str = "the source") -> str | None:
        """Why the searches for this class gave no image URL at all this run, in one line; None
        when they gave some (or none was asked for: the class was full already)."""
        if self.found or not self.searches:
            return None
        failed = {k: n for k, n in self.searches.items() if k not in ("results", "empty")}
        refused = sorted(k for k in failed if k.startswith("http-4"))  # 5xx: broken, not no
        if UNKNOWN_SHAPE in failed:
            return (f"no images: {source} answered in a shape descend does not read "
                    f"({_pages(failed[UNKNOWN_SHAPE])}); its answers may have changed, or it "
                    "sent a page for robots: try another --source")
        if refused:
            codes = ", ".join(k.removeprefix("http-") for k in refused)
            return (f"no images: {source} refused the search (HTTP {codes}, "
                    f"{_pages(sum(failed[k] for k in refused))}); wait, lower --rate, or try "
                    "another --source")
        if failed:
            kinds = ", ".join(sorted(failed))
            return (f"no images: the search could not be fetched ({kinds}, "
                    f"{_pages(sum(failed.values()))}); check the network and --base-url, or "
                    "try again later")
        return (f"no images: {source} found nothing ({_pages(self.searches['empty'])} without "
                f"results): try other search words (--class {self.name}=WORD1,WORD2)")


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
    source: str = "the source"  # the source's name, for the lines that speak of it

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
            lines += [f"{c.name}: {note}" for note in self._notes(c)]
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

    def _notes(self, c: ClassSummary) -> list[str]:
        """What the table cannot say about class ``c``: failed pages, blocked addresses, and
        why it is short."""
        notes = list(c.notes)
        if c.rejected["blocked-address"]:
            notes.append(f"{c.rejected['blocked-address']} URLs led to loopback, private or "
                         "link-local addresses and were not fetched; if those machines are "
                         "yours, add --allow-private-addresses")
        if c.kept < c.target and not self.stopped:
            notes.append(c.why_none(self.source) or
                         f"only {c.kept} of {c.target} images; the source ran out of usable "
                         f"results: add search words (--class {c.name}=WORD1,WORD2) or another "
                         "--source")
        return notes

    def to_dict(self) -> dict[str, Any]:
        """The report as ``descend crawl --json`` prints it: plain JSON values."""
        return {
            "folder": str(self.out),
            "manifest": str(self.manifest),
            "source": self.source,
            "classes": [{
                "class": c.name, "target": c.target, "kept": c.kept, "train": c.train,
                "val": c.val, "new": c.kept_new, "found": c.found, "fetched": c.fetched,
                "rejected": sum(c.rejected.values()), "rejected_by_reason": dict(c.rejected),
                "searches": dict(c.searches), "why_none": c.why_none(self.source),
                "notes": self._notes(c),
            } for c in self.classes],
            "images": sum(c.kept for c in self.classes),
            "short": [c.name for c in self.short],
            "bytes_downloaded": self.bytes_downloaded,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "notes": self.notes,
        }


def _reasons(counts: Counter[str]) -> str:
    if not counts:
        return "0"
    parts = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{sum(counts.values())}: {parts}"


def _pages(n: int) -> str:
    return f"{n} results page{'s' if n != 1 else ''}"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"
