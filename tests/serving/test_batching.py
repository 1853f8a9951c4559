"""Admission control and dynamic batching, alone and through the app."""

from __future__ import annotations

import asyncio

import pytest
import torch
from starlette.testclient import TestClient

from descend.evaluation.predict import Classifier
from descend.serving import Limits, create_app
from descend.serving.batching import Admission, Batcher, Busy


def test_admission_lets_in_flight_in_queues_the_next_and_refuses_the_rest() -> None:
    async def scenario() -> list[str]:
        admission, events = Admission(in_flight=1, queue=1), []
        release = asyncio.Event()

        async def request(name: str) -> None:
            try:
                async with admission.slot():
                    events.append(f"{name} in")
                    await release.wait()
            except Busy:
                events.append(f"{name} busy")

        first = asyncio.create_task(request("a"))
        await asyncio.sleep(0)
        second = asyncio.create_task(request("b"))
        await asyncio.sleep(0)
        assert (admission.active, admission.waiting) == (1, 1)
        await request("c")  # no place, no room to wait: refused at once
        release.set()
        await asyncio.gather(first, second)
        assert (admission.active, admission.waiting) == (0, 0)
        return events

    assert asyncio.run(scenario()) == ["a in", "c busy", "b in"]


def test_a_waiter_that_gives_up_leaves_the_queue() -> None:
    async def scenario() -> None:
        admission = Admission(in_flight=1, queue=1)
        async with admission.slot():
            waiter = asyncio.create_task(admission.slot().__aenter__())
            await asyncio.sleep(0)
            assert admission.waiting == 1
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert admission.waiting == 0
        assert admission.active == 0

    asyncio.run(scenario())


def test_requests_that_arrive_together_share_a_forward_pass() -> None:
    sizes: list[int] = []

    def double(batch: torch.Tensor) -> torch.Tensor:
        sizes.append(len(batch))
        return batch.float() * 2

    async def scenario() -> list[torch.Tensor]:
        batcher = Batcher(double, max_batch=4, max_wait_s=0.05)
        try:
            return await asyncio.gather(*(batcher.submit(torch.full((1, 2, 2), i))
                                          for i in range(6)))
        finally:
            batcher.close()

    rows = asyncio.run(scenario())
    assert [int(r[0, 0, 0]) for r in rows] == [0, 2, 4, 6, 8, 10]  # each its own row
    assert sizes == [4, 2]


def test_a_batch_size_of_one_runs_each_request_alone() -> None:
    sizes: list[int] = []

    async def scenario() -> None:
        batcher = Batcher(lambda b: sizes.append(len(b)) or b, max_batch=1, max_wait_s=1.0)
        try:
            await asyncio.wait_for(asyncio.gather(*(batcher.submit(torch.zeros(1))
                                                    for _ in range(3))), 5)
        finally:
            batcher.close()

    asyncio.run(scenario())
    assert sizes == [1, 1, 1]


def test_a_full_server_answers_503_with_retry_after_at_once(
        fixture_classifier: Classifier, png_bytes: bytes) -> None:
    app = create_app(fixture_classifier, limits=Limits(max_in_flight=2, max_queue=0))
    service = app.app.state.service
    client = TestClient(app, base_url="http://127.0.0.1")
    service.admission.active = 2  # two requests under way
    r = client.post("/predict", files={"file": ("red.png", png_bytes)})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "busy" in r.json()["error"]
    service.admission.active = 0
    assert client.post("/predict", files={"file": ("red.png", png_bytes)}).status_code == 200
    metrics = client.get("/metrics").text
    assert 'descend_refused_total{reason="busy"} 1.0' in metrics


def test_a_request_that_waits_past_the_request_timeout_gets_a_503(
        fixture_classifier: Classifier, png_bytes: bytes) -> None:
    app = create_app(fixture_classifier,
                     limits=Limits(max_in_flight=1, max_queue=4, request_timeout=0.3))
    app.app.state.service.admission.active = 1  # the one place, taken for good
    client = TestClient(app, base_url="http://127.0.0.1")
    r = client.post("/predict", files={"file": ("red.png", png_bytes)})
    assert r.status_code == 503 and "--request-timeout" in r.json()["error"]
    assert app.app.state.service.admission.waiting == 0  # the waiter left the queue


def test_big_pictures_are_decoded_in_their_own_lane(fixture_classifier: Classifier,
                                                    png_bytes: bytes) -> None:
    import io

    from PIL import Image

    from descend.serving.app import decode_cost

    buf = io.BytesIO()
    Image.new("RGB", (800, 800)).save(buf, "JPEG")
    assert decode_cost(buf) == 800 * 800 // 64  # a JPEG: at its reduced decode's scale
    assert decode_cost(io.BytesIO(png_bytes)) == 40 * 30
    assert decode_cost(io.BytesIO(b"not an image")) == 0
    app = create_app(fixture_classifier, limits=Limits(big_pixels=1000))  # 40x30 is big
    client = TestClient(app, base_url="http://127.0.0.1")
    assert client.post("/predict", files={"file": ("red.png", png_bytes)}).status_code == 200
    big_lane = app.app.state.service.big_decoder
    assert big_lane._threads  # the one thread of the big lane did the work
