"""Fixtures for the crawl tests: a local fake web on 127.0.0.1, never the internet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fakeweb import FakeWeb


@pytest.fixture
def web() -> Iterator[FakeWeb]:
    with FakeWeb() as server:
        yield server
