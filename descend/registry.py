"""Name -> factory registries: the command line, config files and the API say the same names."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from descend.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of factories; unknown names fail with the list of valid ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)  # in the order they were registered


def name_list(names: Sequence[str], last: str = "or") -> str:
    """``["a", "b", "c"]`` -> "a, b or c", for help texts; names that differ only in their last
    digit are written once: efficientnet_lite0/1/2."""
    grouped: list[str] = []
    stem = None
    for name in names:
        match = re.fullmatch(r"(.*\D)(\d)", name)
        if match and grouped and match[1] == stem:
            grouped[-1] += f"/{match[2]}"
        else:
            grouped.append(name)
        stem = match[1] if match else None
    return f" {last} ".join(filter(None, [", ".join(grouped[:-1]), grouped[-1]])) if grouped else ""
