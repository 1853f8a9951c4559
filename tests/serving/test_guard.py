"""What every request meets: the Host allow-list, cross-site refusal, security headers, strict
queries, JSON for anything unexpected, timeouts, /metrics and the access log."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
from starlette.testclient import TestClient

from descend.evaluation.predict import Classifier
from descend.serving import Limits, create_app, default_hosts, pixel_limit
from descend.serving.guard import host_name


@pytest.fixture
def client(fixture_classifier: Classifier) -> TestClient:
    return TestClient(create_app(fixture_classifier), base_url="http://127.0.0.1:8000",
                      raise_server_exceptions=False)


def post(client: TestClient, image: bytes, **kw: object):
    return client.post("/predict", files={"file": ("red.png", image, "image/png")}, **kw)


def test_a_host_not_of_the_server_is_refused_without_echoing_it(client: TestClient,
                                                                 png_bytes: bytes) -> None:
    for r in (client.get("/health", headers={"host": "evil.example"}),
              post(client, png_bytes, headers={"host": "evil.example:8000"})):
        assert r.status_code == 400 and "--allow-host" in r.json()["error"]
        assert "evil" not in r.text
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST."):
        assert client.get("/health", headers={"host": host}).status_code == 200, host


def test_allow_host_adds_names_and_the_defaults_follow_the_listening_address(
        fixture_classifier: Classifier) -> None:
    app = create_app(fixture_classifier, allowed_hosts=["models.example:8000"])
    client = TestClient(app, base_url="http://models.example:8000")
    assert client.get("/health").status_code == 200
    assert client.get("/health", headers={"host": "127.0.0.1"}).status_code == 400
    assert {"localhost", "127.0.0.1", "::1"} <= set(default_hosts("127.0.0.1"))
    assert default_hosts("192.0.2.7") == ["192.0.2.7"]  # an address: itself only
    assert "localhost" in default_hosts("0.0.0.0")
    assert host_name("[::1]:80") == "::1" and host_name("Example.org.:8000") == "example.org"


def test_a_cross_site_post_is_refused_and_the_servers_own_page_is_not(
        client: TestClient, png_bytes: bytes) -> None:
    r = post(client, png_bytes, headers={"origin": "https://evil.example"})
    assert r.status_code == 403 and "--allow-origin" in r.json()["error"]
    r = post(client, png_bytes, headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    assert post(client, png_bytes, headers={"origin": "null"}).status_code == 403
    own = {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"}
    assert post(client, png_bytes, headers=own).status_code == 200
    assert post(client, png_bytes).status_code == 200  # a program: no Origin at all


def test_allow_origin_lets_another_sites_page_post_and_read_the_answer(
        fixture_classifier: Classifier, png_bytes: bytes) -> None:
    app = create_app(fixture_classifier, allowed_origins=["https://app.example"])
    client = TestClient(app, base_url="http://127.0.0.1")
    r = post(client, png_bytes, headers={"origin": "https://app.example",
                                         "sec-fetch-site": "cross-site"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://app.example"


def test_every_answer_carries_nosniff_and_frame_ancestors_none(client: TestClient,
                                                                png_bytes: bytes) -> None:
    answers = [client.get("/"), client.get("/health"), client.get("/metrics"),
               client.get("/nothing"), client.get("/predict"), post(client, png_bytes),
               post(client, b"not an image"), client.get("/", headers={"host": "evil.example"})]
    for r in answers:
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], r.url
    assert "script-src 'unsafe-inline'" in answers[0].headers["content-security-policy"]


@pytest.mark.parametrize("query, what", [
    ("top_k=%C2%B2", "top_k"), ("top_k=" + "9" * 5000, "top_k"), ("top_k=1&top_k=2", "once"),
    ("top_k=", "top_k"), ("topk=3", "unknown query parameter"), ("top_k=3&x=1", "'x'"),
])
def test_a_bad_query_is_a_json_400(client: TestClient, png_bytes: bytes, query: str,
                                   what: str) -> None:
    r = client.post(f"/predict?{query}", files={"file": ("red.png", png_bytes)})
    assert r.status_code == 400 and what in r.json()["error"]
    assert len(r.text) < 400


def test_anything_unexpected_is_a_json_500_without_a_traceback_and_is_logged(
        client: TestClient, png_bytes: bytes, fixture_classifier: Classifier,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object, **kw: object) -> None:
        raise RuntimeError("secret detail at /home/someone/runs")

    monkeypatch.setattr(fixture_classifier, "top", broken)
    with caplog.at_level(logging.ERROR, logger="descend.serving"):
        r = post(client, png_bytes)
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert "log" in r.json()["error"] and "secret" not in r.text and "Traceback" not in r.text
    assert any("secret detail" in str(rec.exc_info) for rec in caplog.records)


def test_a_long_file_name_is_a_clear_400_and_a_fairly_long_one_is_cut(
        client: TestClient, png_bytes: bytes) -> None:
    r = client.post("/predict", files={"file": ("a" * 8000 + ".png", png_bytes)})
    assert r.status_code == 400 and "file name" in r.json()["error"]
    r = client.post("/predict", files={"file": ("b" * 3000 + ".png", png_bytes)})
    assert r.status_code == 200 and r.json()["path"] == "b" * 255


def test_too_many_pixels_for_the_model_is_refused_from_the_header(
        fixture_classifier: Classifier) -> None:
    from tests.data.conftest import _huge_png_header as huge_png_header

    assert pixel_limit((32, 32)) == 40_000_000 and pixel_limit((224, 224), 256) == 1024 * 256**2
    client = TestClient(create_app(fixture_classifier), base_url="http://127.0.0.1")
    assert client.get("/health").json()["max_pixels"] == 40_000_000
    r = client.post("/predict", files={"file": ("bomb.png", huge_png_header(7000, 6000))})
    assert r.status_code == 422 and "--max-pixels" in r.json()["error"]  # 42 MP: over 40


def test_a_16_bit_png_over_a_lowered_limit_is_refused_and_under_it_predicted(
        fixture_classifier: Classifier) -> None:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((300, 400), 30_000, dtype=np.uint16)).save(buf, "PNG")
    client = TestClient(create_app(fixture_classifier, limits=Limits(max_pixels=100_000)),
                        base_url="http://127.0.0.1")
    r = client.post("/predict", files={"file": ("deep.png", buf.getvalue())})
    assert r.status_code == 422 and "over the limit of 100000" in r.json()["error"]
    client = TestClient(create_app(fixture_classifier, limits=Limits(max_pixels=120_000)),
                        base_url="http://127.0.0.1")
    assert client.post("/predict", files={"file": ("deep.png", buf.getvalue())}).status_code \
        == 200


def test_metrics_count_requests_latency_batches_and_the_queue(client: TestClient,
                                                             png_bytes: bytes) -> None:
    post(client, png_bytes)
    client.get("/nothing/at/all")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'descend_requests_total{path="/predict",status="200"} 1.0' in text
    assert 'descend_requests_total{path="other",status="404"} 1.0' in text
    assert 'descend_request_seconds_count{path="/predict"} 1.0' in text
    assert "descend_batch_size_count 1.0" in text
    assert "descend_queue_length 0.0" in text and "descend_in_flight 0.0" in text


def test_each_app_counts_apart(fixture_classifier: Classifier, png_bytes: bytes) -> None:
    first, second = (TestClient(create_app(fixture_classifier), base_url="http://127.0.0.1")
                     for _ in range(2))
    post(first, png_bytes)
    assert 'path="/predict"' not in second.get("/metrics").text


def test_the_access_log_is_one_json_line_per_request(fixture_classifier: Classifier,
                                                     png_bytes: bytes) -> None:
    stream = io.StringIO()
    client = TestClient(create_app(fixture_classifier, access_log=stream),
                        base_url="http://127.0.0.1")
    post(client, png_bytes)
    client.get("/health", headers={"host": "evil.example"})
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["method"], x["path"], x["status"]) for x in lines] == [
        ("POST", "/predict", 200), ("GET", "/health", 400)]
    assert lines[0]["bytes_in"] > len(png_bytes) and lines[0]["ms"] > 0
    assert lines[1]["error"] == "refused"


def test_a_stalled_body_is_a_408_that_closes(fixture_classifier: Classifier) -> None:
    app = create_app(fixture_classifier, limits=Limits(body_timeout=0.2))
    sent: list[dict] = []
    calls = 0

    async def receive() -> dict:
        nonlocal calls
        calls += 1
        if calls > 1:
            await asyncio.sleep(30)  # the client stops sending
        return {"type": "http.request", "body": b"--b\r\n", "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/predict", "raw_path": b"/predict",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80),
             "headers": [(b"host", b"127.0.0.1"),
                         (b"content-type", b"multipart/form-data; boundary=b")]}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    start = sent[0]
    assert start["status"] == 408 and (b"connection", b"close") in start["headers"]
    assert "--body-timeout" in json.loads(sent[1]["body"])["error"]
