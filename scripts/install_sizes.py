"""The distributions `pip install descend` and each extra bring, and their installed size.

Walks the requirements of the installed descend (core, then each extra) through the installed
distributions of this environment and sums the sizes of their files: the figures of README's
"As a package". Run it with the venv's Python: ``.venv/bin/python scripts/install_sizes.py``.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re

from packaging.requirements import Requirement

EXTRAS = ("crawl", "serve", "export", "audit", "pretrained")


def size(dist: md.Distribution) -> int:
    total = 0
    for file in dist.files or []:
        try:
            total += os.path.getsize(str(dist.locate_file(file)))
        except OSError:
            pass
    return total


def closure(requirements: list[str]) -> dict[str, md.Distribution]:
    """Every installed distribution ``requirements`` need, by normalised name."""
    seen: dict[str, md.Distribution] = {}
    stack: list[tuple[str, tuple[str, ...]]] = [(r, ()) for r in requirements]
    while stack:
        text, extras = stack.pop()
        req = Requirement(text)
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras or ("",)):
            continue
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue
        if key not in seen or req.extras:
            seen[key] = dist
            stack += [(sub, tuple(req.extras)) for sub in dist.requires or []]
    return seen


def mib(dists: dict[str, md.Distribution]) -> int:
    return round(sum(size(d) for d in dists.values()) / 2**20)


def main() -> None:
    requires = md.distribution("descend").requires or []
    core = closure([r for r in requires if "extra ==" not in r])
    print(f"core: {len(core)} distributions, {mib(core)} MiB")

    def extra_of(names: tuple[str, ...]) -> dict[str, md.Distribution]:
        wanted = [r.split(";")[0] for r in requires
                  if any(f'extra == "{n}"' in r for n in names)]
        return {k: d for k, d in closure(wanted).items() if k not in core}

    for name in EXTRAS:
        added = extra_of((name,))
        big = ", ".join(f"{k} {round(size(d) / 2**20)}" for k, d in sorted(added.items())
                        if size(d) > 5 * 2**20)
        print(f"{name}: {len(added)} distributions, {mib(added)} MiB ({big})")
    every = extra_of(EXTRAS)
    print(f"all extras: {len(every)} distributions, {mib(every)} MiB")


if __name__ == "__main__":
    main()
