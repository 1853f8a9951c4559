"""A JSON object's fields read by type, for the typed records of the files descend writes
(the crawl's manifest, the audit's files): the first missing or mistyped field is an error that
names it ("a suspect has no 'score'", "its 'limit' is not a whole number").

JSON has one kind of number and keeps booleans apart: 3 reads as a float here, and true is not
a whole number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from descend.errors import DataError

T = TypeVar("T")

NAMES = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
         dict: "an object", list: "a list"}


def is_kind(value: object, kind: type) -> bool:
    """Whether the JSON ``value`` is a ``kind`` (see the module docstring for numbers)."""
    if kind is not bool and isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if kind is float else kind)


def kind_name(kind: type) -> str:
    return NAMES.get(kind, f"a {kind.__name__}")


class Fields:
    """The fields of ``data``, described as ``what`` in the errors ("it": "it has no 'url'",
    "its 'url' is not a string"); each error is an ``error`` (`DataError` unless told)."""

    def __init__(self, data: Any, what: str = "it",
                 error: type[Exception] = DataError) -> None:
        self.what, self.error = what, error
        if not isinstance(data, Mapping):
            raise error(f"{what} is not a JSON object")
        self.data: Mapping[str, Any] = data

    @property
    def whose(self) -> str:
        return "its" if self.what == "it" else f"{self.what}'s"

    def need(self, key: str, kind: type[T]) -> T:
        value = self.may(key, kind)
        if value is None:
            raise self.error(f"{self.what} has no {key!r}")
        return value

    def may(self, key: str, kind: type[T]) -> T | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not is_kind(value, kind):
            raise self.error(f"{self.whose} {key!r} is not {kind_name(kind)}")
        return value

    def items(self, key: str, kind: type[T], needed: bool = False) -> list[T] | None:
        """A list of ``kind``s."""
        values = self.need(key, list) if needed else self.may(key, list)
        if values is not None and not all(is_kind(v, kind) for v in values):
            raise self.error(f"{self.whose} {key!r} is not a list of {kind_name(kind)}s")
        return values

    def mapping(self, key: str, kind: type[T], needed: bool = False) -> dict[str, T] | None:
        """An object whose values are ``kind``s."""
        values = self.need(key, dict) if needed else self.may(key, dict)
        if values is not None and not all(is_kind(v, kind) for v in values.values()):
            raise self.error(f"{self.whose} {key!r} holds other than {kind_name(kind)}s")
        return values

    def counts(self) -> dict[str, int]:
        """The object itself, all of whose values are whole numbers."""
        if not all(is_kind(v, int) for v in self.data.values()):
            raise self.error(f"{self.what} holds other than whole numbers")
        return dict(self.data)
