"""Models and images for the serving tests, and a real server on a free port.

The JSON tests use the committed 0.1.0 run (a one-epoch cnn whose answers are nearly the same for
every image: enough to check shapes and errors). The browser test uses the evaluation tests'
`photo_run`, a model that tells the three colours apart, so that the page must show the class
of the very image it was given.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from PIL import Image
from starlette.types import ASGIApp

from descend.evaluation.predict import Classifier
from tests.evaluation.conftest import photo_run  # noqa: F401 - the fixture, shared
from tests.support.web import running

FIXTURE_RUN = Path(__file__).parent.parent / "fixtures" / "run-0.1.0"


@pytest.fixture(scope="session")
def fixture_classifier() -> Classifier:
    return Classifier.load(FIXTURE_RUN / "best.pt", "cpu")


@pytest.fixture
def png_bytes() -> bytes:
    """A 40 x 30 red PNG."""
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (220, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def serve() -> Callable[[ASGIApp], AbstractContextManager[str]]:
    """``with serve(app) as url:``: ``app`` on a real socket for the length of the block."""
    return running
