"""The JSON endpoints, through Starlette's test client and through raw ASGI calls; the command
line, on a real socket."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from descend.cli.main import main
from descend.errors import ConfigError
from descend.evaluation.predict import Classifier
from descend.serving import Limits, bind, create_app
from descend.serving.limits import FORM_SLACK

LIMIT = 100_000  # bytes: small, so that the tests send little


@pytest.fixture
def client(fixture_classifier: Classifier) -> TestClient:
    app = create_app(fixture_classifier, checkpoint="runs/x/best.pt",
                     limits=Limits(max_upload_bytes=LIMIT))
    return TestClient(app, base_url="http://127.0.0.1")


def test_a_good_image_gets_every_class_with_probabilities_summing_to_one(
        client: TestClient, png_bytes: bytes, fixture_classifier: Classifier) -> None:
    r = client.post("/predict?top_k=10", files={"file": ("red.png", png_bytes, "image/png")})
    assert r.status_code == 200
    body = r.json()
    assert body["path"] == "red.png"
    predictions = body["predictions"]
    assert sorted(p["class"] for p in predictions) == sorted(fixture_classifier.classes)
    assert sum(p["probability"] for p in predictions) == pytest.approx(1, abs=1e-4)
    probs = [p["probability"] for p in predictions]
    assert probs == sorted(probs, reverse=True)
    # The same answer `descend predict` gives for these bytes.
    expected = fixture_classifier.predict(png_bytes, top_k=10)
    assert [p["class"] for p in predictions] == [c for c, _ in expected.top]


def test_top_k_defaults_to_the_servers_and_is_checked(fixture_classifier: Classifier,
                                                     png_bytes: bytes) -> None:
    client = TestClient(create_app(fixture_classifier, top_k=2), base_url="http://localhost")
    files = {"file": ("red.png", png_bytes, "image/png")}
    assert len(client.post("/predict", files=files).json()["predictions"]) == 2
    assert len(client.post("/predict?top_k=1", files=files).json()["predictions"]) == 1
    for bad in ("0", "x", "-1", "²", "٣", "1" * 5000, "1001", " 1", "1.0"):
        r = client.post(f"/predict?top_k={bad}", files=files)
        assert r.status_code == 400 and "top_k" in r.json()["error"], bad
        assert "connection" not in r.headers  # the body was read: the connection goes on


def test_an_oversized_upload_is_refused_with_413(client: TestClient) -> None:
    r = client.post("/predict", files={"file": ("big.png", b"\0" * (LIMIT + FORM_SLACK + 1),
                                                "image/png")})
    assert r.status_code == 413
    assert "limit" in r.json()["error"] and "--max-upload-mb" in r.json()["error"]


def test_a_file_of_the_limit_is_not_refused_for_its_size(client: TestClient) -> None:
    r = client.post("/predict", files={"file": ("big.png", b"\0" * LIMIT, "image/png")})
    assert r.status_code == 415  # read whole, then found not to be an image


def asgi_post(app, headers: list[tuple[bytes, bytes]], chunk: bytes, chunks: int
              ) -> tuple[int, dict, int]:
    """POST /predict straight to the ASGI app with a body of ``chunks`` x ``chunk``: (status,
    JSON answer, chunks the app read)."""
    read, sent = 0, []

    async def receive() -> dict:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": chunk, "more_body": read < chunks}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/predict", "raw_path": b"/predict",
             "query_string": b"", "root_path": "", "headers": [(b"host", b"127.0.0.1"), *headers],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), read


def test_an_oversized_stream_is_cut_off_at_the_limit_not_read_to_its_end(
        fixture_classifier: Classifier) -> None:
    app = create_app(fixture_classifier, limits=Limits(max_upload_bytes=LIMIT))
    chunk = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n\r\n"
    chunk += b"\0" * (10_000 - len(chunk))
    headers = [(b"content-type", b"multipart/form-data; boundary=b")]  # chunked: no length
    status, body, read = asgi_post(app, headers, chunk, chunks=1000)  # 10 MB offered
    assert status == 413 and "limit" in body["error"]
    assert read <= (LIMIT + FORM_SLACK) // 10_000 + 1


def test_a_declared_length_over_the_limit_is_refused_before_reading(
        fixture_classifier: Classifier) -> None:
    app = create_app(fixture_classifier, limits=Limits(max_upload_bytes=LIMIT))
    headers = [(b"content-type", b"multipart/form-data; boundary=b"),
               (b"content-length", str(50 * 2**20).encode())]
    status, _, read = asgi_post(app, headers, b"\0" * 10_000, chunks=5000)
    assert status == 413 and read == 0


def test_a_truncated_png_is_a_4xx_that_says_so(client: TestClient, png_bytes: bytes) -> None:
    half = png_bytes[: len(png_bytes) // 2]
    r = client.post("/predict", files={"file": ("half.png", half, "image/png")})
    assert 400 <= r.status_code < 500
    assert "half.png" in r.json()["error"] and "truncated" in r.json()["error"]


def test_a_text_file_is_a_4xx_that_says_what_to_send(client: TestClient) -> None:
    r = client.post("/predict", files={"file": ("notes.txt", b"not a picture", "text/plain")})
    assert r.status_code == 415
    assert "notes.txt" in r.json()["error"] and "not an image" in r.json()["error"]
    assert "PNG" in r.json()["error"]


def test_an_empty_file_is_a_4xx(client: TestClient) -> None:
    r = client.post("/predict", files={"file": ("empty.png", b"", "image/png")})
    assert r.status_code == 400 and "empty" in r.json()["error"]


@pytest.mark.parametrize("send", [
    {"files": {"image": ("red.png", b"\x89PNG", "image/png")}},  # the wrong field name
    {"data": {"file": "red.png"}},  # a text field, not a file
    {"content": b"raw bytes", "headers": {"content-type": "image/png"}},  # not a form
    {},  # nothing at all
])
def test_a_request_without_the_file_field_is_a_400_naming_it(client: TestClient,
                                                              send: dict) -> None:
    r = client.post("/predict", **send)
    assert r.status_code == 400
    assert "'file'" in r.json()["error"] and "curl -F file=@" in r.json()["error"]


def test_a_broken_multipart_body_is_a_400(client: TestClient) -> None:
    r = client.post("/predict", content=b"no boundary here",
                    headers={"content-type": "multipart/form-data"})
    assert r.status_code == 400 and "form" in r.json()["error"]


def test_get_predict_is_a_405_that_says_post(client: TestClient) -> None:
    r = client.get("/predict")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST" and "POST" in r.json()["error"]


def test_an_unknown_path_is_a_404_listing_the_endpoints(client: TestClient) -> None:
    r = client.get("/nothing")
    assert r.status_code == 404 and "/predict" in r.json()["error"]


def test_health_names_the_model(client: TestClient, fixture_classifier: Classifier) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    h = r.json()
    # The file's name only: an answer tells no client where the machine keeps its runs.
    assert h["status"] == "ok" and h["model"] == "cnn" and h["checkpoint"] == "best.pt"
    assert h["classes"] == len(fixture_classifier.classes) == len(h["class_names"])
    assert h["max_upload_bytes"] == LIMIT


def test_the_page_is_self_contained(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for element in ('id="file"', 'id="result"', 'id="error"', 'id="preview"'):
        assert element in r.text
    assert "http://" not in r.text and "https://" not in r.text  # nothing from the network


def test_a_bad_checkpoint_is_one_line_and_status_2(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    assert main(["serve", str(broken), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("descend: error: ") and err.count("\n") == 1


def test_a_port_in_use_is_a_config_error() -> None:
    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match="--port"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_descend_serve_prints_its_url_and_answers_there(png_bytes: bytes) -> None:
    ckpt = Path(__file__).parent.parent / "fixtures" / "run-0.1.0" / "best.pt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "descend", "serve", str(ckpt), "--port", "0",
                             "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        line = proc.stdout.readline()  # the first line says where the server listens
        assert line.startswith("descend serve: http://127.0.0.1:"), (line, proc.stderr.read())
        base = line.split()[2].rstrip("/")
        health = httpx.get(f"{base}/health", timeout=20).json()
        assert health["model"] == "cnn" and health["checkpoint"] == "best.pt"
        r = httpx.post(f"{base}/predict", files={"file": ("red.png", png_bytes)}, timeout=20)
        assert r.status_code == 200 and len(r.json()["predictions"]) == 3
    finally:
        proc.terminate()
        proc.wait(20)
