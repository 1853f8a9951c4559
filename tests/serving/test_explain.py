"""``POST /predict?explain=1``: the answer of today with a heat map added, a 400 for a bad value,
one explaining request at a time, and batches of predictions that never run beside an
explanation."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient

from descend.evaluation.explain import GRAD_CAM
from descend.evaluation.predict import Classifier
from descend.models import ModelSpec, create_model
from descend.reports.plots import heat_overlay
from descend.runtime.checkpoint import LoadedModel
from descend.serving import Limits, create_app

PNG_URL = "data:image/png;base64,"


def overlay_image(url: str) -> Image.Image:
    assert url.startswith(PNG_URL)
    image = Image.open(io.BytesIO(base64.b64decode(url[len(PNG_URL):], validate=True)))
    image.load()  # the whole PNG decodes, not only its header
    return image


@pytest.fixture
def client(fixture_classifier: Classifier) -> TestClient:
    return TestClient(create_app(fixture_classifier), base_url="http://127.0.0.1")


def test_explain_adds_the_overlay_of_the_top_class_as_a_png_of_the_models_input_size(
        client: TestClient, fixture_classifier: Classifier, png_bytes: bytes) -> None:
    files = {"file": ("red.png", png_bytes, "image/png")}
    plain = client.post("/predict", files=files).json()
    r = client.post("/predict?explain=1&top_k=2", files=files)
    assert r.status_code == 200
    body = r.json()
    explanation = body.pop("explanation")
    assert body == {**plain, "predictions": plain["predictions"][:2]}  # today's fields, as today
    assert explanation["method"] == GRAD_CAM and explanation["layer"]  # the fixture is a cnn
    assert explanation["class"] == body["predictions"][0]["class"]
    image = overlay_image(explanation["overlay"])
    h, w = fixture_classifier.input_size
    assert image.format == "PNG" and image.mode == "RGB" and image.size == (w, h)
    # The picture the model saw under the heat map `descend predict --explain` draws.
    heat = fixture_classifier.explain(png_bytes)[0]
    expected = heat_overlay(fixture_classifier.to_pixels(png_bytes), heat)
    assert np.array_equal(np.asarray(image), expected)


def test_without_explain_or_with_explain_0_the_answer_is_the_plain_one(
        client: TestClient, png_bytes: bytes) -> None:
    files = {"file": ("red.png", png_bytes, "image/png")}
    plain = client.post("/predict", files=files)
    zero = client.post("/predict?explain=0", files=files)
    assert plain.status_code == zero.status_code == 200
    assert zero.content == plain.content and zero.headers == plain.headers
    assert list(plain.json()) == ["path", "predictions"]


@pytest.mark.parametrize("query", ["explain=2", "explain=true", "explain=", "explain=%C2%B9",
                                   "explain=1&explain=1", "explain=01"])
def test_any_other_explain_is_a_400_that_says_what_to_send(
        client: TestClient, png_bytes: bytes, query: str) -> None:
    r = client.post(f"/predict?{query}", files={"file": ("red.png", png_bytes, "image/png")})
    assert r.status_code == 400 and "explain" in r.json()["error"]
    assert "connection" not in r.headers  # the body was read: the connection goes on


def test_the_unknown_parameter_message_names_explain(client: TestClient,
                                                     png_bytes: bytes) -> None:
    r = client.post("/predict?explian=1", files={"file": ("red.png", png_bytes, "image/png")})
    assert r.status_code == 400 and "?explain=1" in r.json()["error"]


def test_explanations_go_one_at_a_time_and_plain_predictions_pass_them(
        fixture_classifier: Classifier, png_bytes: bytes) -> None:
    app = create_app(fixture_classifier, limits=Limits(max_queue=0))
    service = app.app.state.service
    client = TestClient(app, base_url="http://127.0.0.1")
    files = {"file": ("red.png", png_bytes)}
    service.explaining.active = 1  # an explanation under way, and no room to wait
    r = client.post("/predict?explain=1", files=files)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "explain" in r.json()["error"]
    assert client.post("/predict", files=files).status_code == 200
    service.explaining.active = 0
    assert "explanation" in client.post("/predict?explain=1", files=files).json()
    metrics = client.get("/metrics").text
    assert 'descend_refused_total{reason="explain-busy"} 1.0' in metrics


def test_batched_predictions_beside_explanations_keep_their_exact_probabilities(
        serve: Callable[[object], AbstractContextManager[str]]) -> None:
    """fastres with test-time augmentation, which an explanation turns off while it runs: a
    batch beside it would be predicted without. Every batch must run alone in the model, with
    the augmentation on and gradients off, and give, bit for bit, what the same batch gives on
    its own afterwards. (With the explanations run in a decoding thread instead, this failed on
    each of four tries: batches without their tta, a 500 from Captum's hook seeing a batch.)"""
    torch.manual_seed(0)
    # scale: logits far apart, so that a prediction without its tta is far from one with.
    spec = ModelSpec("fastres", 3, 3, (32, 32), {"tta": 2, "scale": 100.0})
    model = create_model(spec).eval()
    loaded = LoadedModel(model, spec, ["a", "b", "c"], [0.5] * 3, [0.25] * 3, {})
    classifier = Classifier(loaded, torch.device("cpu"))
    app = create_app(classifier, limits=Limits(max_batch_wait_ms=10))
    service = app.app.state.service

    # What the model's thread does, as it does it: batches and explanations, their times, and
    # the state of the model at each forward pass of a batch.
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    spans: dict[str, list[tuple[float, float]]] = {"batch": [], "explain": []}
    forwards: list[tuple[int, bool]] = []
    threads: set[str] = set()
    run_batch, heat_map = service.batcher.run, service.heat_map
    doing = threading.local()

    def timed(kind: str, work: Callable[[], torch.Tensor]) -> torch.Tensor:
        threads.add(threading.current_thread().name)
        doing.kind, start = kind, time.monotonic()
        try:
            return work()
        finally:
            spans[kind].append((start, time.monotonic()))
            doing.kind = None

    def batch(pixels: torch.Tensor) -> torch.Tensor:
        probs = timed("batch", lambda: run_batch(pixels))
        batches.append((pixels.clone(), probs.clone()))
        return probs

    def forward(module: object, inputs: object) -> None:
        if getattr(doing, "kind", None) == "batch":
            forwards.append((model.tta, torch.is_grad_enabled()))

    service.batcher.run = batch
    service.heat_map = lambda pixels, target: timed("explain", lambda: heat_map(pixels, target))
    model.register_forward_pre_hook(forward)

    rng = np.random.default_rng(0)
    images = []
    for _ in range(48):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
        images.append(buf.getvalue())

    async def send_all(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(*(
                client.post("/predict?explain=1" if k % 2 == 0 else "/predict?top_k=3",
                            files={"file": (f"{k}.png", data, "image/png")})
                for k, data in enumerate(images)))

    with serve(app) as url:
        answers = [r.json() for r in asyncio.run(send_all(url))]

    assert all("predictions" in a for a in answers), answers
    assert sum("explanation" in a for a in answers) == 24
    assert max(len(p) for p, _ in batches) > 1  # predictions were batched
    assert len(threads) == 1 and next(iter(threads)).startswith("descend-model")
    assert set(forwards) == {(2, False)}  # every batch ran with its tta, without gradients
    assert not any(probs.requires_grad for _, probs in batches)
    # Never beside each other: the explanations fall between batches.
    for start, end in spans["explain"]:
        assert all(e <= start or s >= end for s, e in spans["batch"])
    first, last = spans["explain"][0][0], spans["explain"][-1][1]
    assert any(first < s < last for s, _ in spans["batch"])  # and batches ran between them

    model.tta = 0
    without_tta = service.probabilities(torch.cat([p for p, _ in batches]))
    model.tta = 2
    rows = {}
    for pixels, probs in batches:
        alone = service.probabilities(pixels)  # the same batch, nothing beside it
        assert torch.equal(probs, alone)
        rows.update({bytes(p.numpy()): row for p, row in zip(pixels, alone)})
    # A batch without its tta would have other probabilities, by far.
    assert (without_tta - torch.cat([p for _, p in batches])).abs().max() > 0.01
    for k, answer in enumerate(answers):  # and every answer is its row's
        pixels = classifier.to_pixels(images[k])
        expected = classifier.top(rows[bytes(pixels.numpy())][None], [f"{k}.png"], 3)[0]
        answer.pop("explanation", None)
        assert answer == expected.to_dict()


def test_the_page_has_an_explain_toggle_off_by_default_and_may_show_data_pngs(
        client: TestClient) -> None:
    r = client.get("/")
    assert '<input id="explain" type="checkbox">' in r.text and 'id="overlay"' in r.text
    assert "img-src blob: data:;" in r.headers["content-security-policy"]
