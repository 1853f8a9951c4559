"""The review app through Starlette's test client: the page, the paged findings, the images and
what it refuses (paths outside the audit, other host names, cross-site posts, bad decisions)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from descend.audit.decisions import read_decisions
from descend.audit.review import create_review_app, serve_review
from descend.errors import DataError
from tests.audit.conftest import make_dataset, suspect, write_audit

LOCAL = "http://127.0.0.1:8765"


def client_for(audit_dir: Path) -> TestClient:
    return TestClient(create_review_app(audit_dir), base_url=LOCAL)


@pytest.fixture
def client(split_audit: Path) -> TestClient:
    return client_for(split_audit)


def post(client: TestClient, url: str, body: object, **headers: str):  # noqa: ANN201
    return client.post(url, content=json.dumps(body),
                       headers={"content-type": "application/json", **headers})


def test_the_page_loads_with_its_security_headers(client: TestClient) -> None:
    answer = client.get("/")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert "descend audit review" in answer.text and "innerHTML" not in answer.text
    csp = answer.headers["content-security-policy"]
    assert "img-src 'self'" in csp and "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert client.get("/api/audit").headers["x-content-type-options"] == "nosniff"
    assert "http" not in answer.text.replace("http-equiv", "")  # no external resource


def test_the_findings_come_a_page_at_a_time_with_their_decisions(tmp_path: Path) -> None:
    root = tmp_path / "many"
    make_dataset(root, split_layout=False, per_class=10)
    audit_dir = write_audit(root, [suspect(f"s{i}", f"cat/cat_{i}.png", "dog", score=1 - i / 100)
                                   for i in range(10)]
                            + [suspect(f"t{i}", f"dog/dog_{i}.png", "bird") for i in range(10)])
    client = client_for(audit_dir)
    first = client.get("/api/audit", params={"per_page": 8}).json()
    assert (first["view"], first["page"], first["pages"], first["total"]) == ("suspects", 1, 3, 20)
    assert [s["id"] for s in first["items"]] == [f"s{i}" for i in range(8)]  # ranked as given
    assert first["classes"] == ["cat", "dog", "bird"] and first["data"] == f"imagefolder:{root}"
    item = first["items"][0]
    assert (item["path"], item["given"], item["suggested"], item["kind"], item["decision"]) == \
        ("cat/cat_0.png", "cat", "dog", "label", None)
    last = client.get("/api/audit", params={"page": 3, "per_page": 8}).json()
    assert [s["id"] for s in last["items"]] == ["t6", "t7", "t8", "t9"]
    assert client.get("/api/audit", params={"page": 4, "per_page": 8}).json()["items"] == []
    assert len(client.get("/api/audit").json()["items"]) == 20  # 24 a page by default

    assert post(client, "/api/decide", {"path": "cat/cat_1.png", "action": "drop"}).is_success
    second = client.get("/api/audit", params={"per_page": 8}).json()
    assert second["items"][1]["decision"] == {"action": "drop"}
    assert second["counts"] == {"suspects": 20, "duplicates": 0, "suspects_left": 19,
                                "duplicates_left": 0}


@pytest.mark.parametrize("query", ["page=0", "page=-1", "page=x", "per_page=0",
                                   "per_page=1000", "page=1e3", "view=all"])
def test_a_bad_page_query_is_a_400_that_says_what_to_send(client: TestClient, query: str) -> None:
    answer = client.get("/api/audit?" + query)
    assert answer.status_code == 400
    assert "must be" in answer.json()["error"]


def test_the_duplicates_view_gives_both_sides_and_their_decisions(client: TestClient) -> None:
    post(client, "/api/decide", {"path": "val/cat/cat_v1.png", "action": "drop"})
    page = client.get("/api/audit", params={"view": "duplicates"}).json()
    assert page["total"] == 1 and page["counts"]["duplicates_left"] == 0
    [pair] = page["items"]
    assert (pair["a"], pair["b"], pair["splits"]) == ("train/cat/cat_0.png", "val/cat/cat_v1.png",
                                                      ["train", "val"])
    assert pair["decisions"] == {"a": None, "b": {"action": "drop"}}


def test_an_image_of_the_audit_is_served_as_it_is(client: TestClient, split_audit: Path) -> None:
    answer = client.get("/image", params={"path": "train/cat/cat_1.png"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert answer.content == (split_audit.parent / "train/cat/cat_1.png").read_bytes()
    assert answer.headers["x-content-type-options"] == "nosniff"
    duplicate_side = client.get("/image", params={"path": "val/cat/cat_v1.png"})
    assert duplicate_side.status_code == 200


def test_a_large_or_unusual_image_is_served_as_a_thumbnail(tmp_path: Path) -> None:
    root = tmp_path / "big"
    make_dataset(root, split_layout=False, per_class=1)
    Image.new("RGB", (1200, 800), (200, 30, 30)).save(root / "cat" / "photo.jpg", quality=90)
    Image.new("RGB", (40, 30), (30, 30, 200)).save(root / "cat" / "scan.bmp")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    client = client_for(write_audit(root, [suspect("s1", "cat/photo.jpg", "dog"),
                                           suspect("s2", "cat/scan.bmp", "dog"),
                                           suspect("s3", "cat/broken.png", "dog")]))
    photo = client.get("/image", params={"path": "cat/photo.jpg"})
    assert photo.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(photo.content)).size == (256, 171)
    scan = client.get("/image", params={"path": "cat/scan.bmp"})
    assert scan.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(scan.content)).size == (40, 30)
    broken = client.get("/image", params={"path": "cat/broken.png"})
    assert broken.status_code == 415 and "cannot be shown" in broken.json()["error"]


@pytest.mark.parametrize("path", ["train/cat/cat_2.png",  # in the dataset, not in the audit
                                  "../pets/train/cat/cat_1.png", "train/cat/../cat/cat_1.png",
                                  "/etc/passwd", ".descend-audit/audit.json", "", "%2e%2e/x"])
def test_only_the_audits_own_images_are_served(client: TestClient, path: str) -> None:
    answer = client.get("/image", params={"path": path})
    assert answer.status_code == 404
    assert answer.json() == {"error": "not an image of this audit: ask for a path /api/audit "
                                      "gives"}


def test_a_link_that_leads_out_of_the_dataset_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "linked"
    make_dataset(root, split_layout=False, per_class=1)
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(secret)
    os.symlink(secret, root / "cat" / "link.png")
    client = client_for(write_audit(root, [suspect("s1", "cat/link.png", "dog")]))
    answer = client.get("/image", params={"path": "cat/link.png"})
    assert answer.status_code == 404 and "not in the dataset now" in answer.json()["error"]


def test_a_decision_is_saved_and_can_be_taken_back(client: TestClient, split_audit: Path) -> None:
    answer = post(client, "/api/decide", {"path": "train/cat/cat_1.png", "action": "relabel",
                                          "to": "dog"})
    assert answer.status_code == 200
    assert answer.json() == {"path": "train/cat/cat_1.png",
                             "decision": {"action": "relabel", "to": "dog"}}
    assert read_decisions(split_audit)["train/cat/cat_1.png"].to == "dog"
    back = post(client, "/api/undo-decision", {"path": "train/cat/cat_1.png"})
    assert back.json() == {"path": "train/cat/cat_1.png", "decision": None}
    assert read_decisions(split_audit) == {}


@pytest.mark.parametrize("body, message", [
    ({"path": "train/cat/cat_1.png", "action": "burn"}, "unknown action 'burn'"),
    ({"path": "train/cat/cat_1.png", "action": "relabel", "to": "horse"}, "not a class"),
    ({"path": "train/cat/cat_1.png", "action": "relabel", "to": "cat"}, "use keep"),
    ({"path": "train/cat/cat_9.png", "action": "keep"}, "not among the audit's suspects"),
    ({"path": "train/cat/cat_1.png"}, 'send {"path"'),
    ({"path": 3, "action": "keep"}, 'send {"path"'),
    ({"path": "train/cat/cat_1.png", "action": "relabel", "to": ["dog"]}, 'send {"path"'),
    (["train/cat/cat_1.png", "keep"], "send a JSON object"),
])
def test_a_bad_decision_is_a_400_that_names_the_problem(
        client: TestClient, split_audit: Path, body: object, message: str) -> None:
    answer = post(client, "/api/decide", body)
    assert answer.status_code == 400 and message in answer.json()["error"]
    assert read_decisions(split_audit) == {}


def test_a_decision_that_is_not_json_is_refused(client: TestClient, split_audit: Path) -> None:
    form = client.post("/api/decide", data={"path": "train/cat/cat_1.png", "action": "drop"})
    assert form.status_code == 415 and "Content-Type: application/json" in form.json()["error"]
    text = client.post("/api/decide", content='{"path": "train/cat/cat_1.png", "action": "drop"}',
                       headers={"content-type": "text/plain"})
    assert text.status_code == 415
    broken = client.post("/api/decide", content="{", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "not JSON" in broken.json()["error"]
    huge = post(client, "/api/decide", {"path": "x" * 20000, "action": "drop"})
    assert huge.status_code == 413
    assert client.get("/api/decide").status_code == 405
    assert client.get("/nothing").json()["error"].startswith("nothing at /nothing")
    assert read_decisions(split_audit) == {}


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.2"])
def test_a_request_for_another_host_name_is_refused(client: TestClient, host: str) -> None:
    for answer in (client.get("/", headers={"host": host}),
                   client.get("/image", params={"path": "train/cat/cat_1.png"},
                              headers={"host": host})):
        assert answer.status_code == 400 and "host name" in answer.json()["error"]


@pytest.mark.parametrize("host", ["localhost:8765", "127.0.0.1", "[::1]:8765"])
def test_the_local_names_are_answered(client: TestClient, host: str) -> None:
    assert client.get("/", headers={"host": host}).status_code == 200


def test_a_cross_site_post_is_refused_and_the_own_pages_is_taken(
        client: TestClient, split_audit: Path) -> None:
    decision = {"path": "train/cat/cat_1.png", "action": "drop"}
    hostile = post(client, "/api/decide", decision, origin="http://evil.example")
    assert hostile.status_code == 403 and "cross-site" in hostile.json()["error"]
    other_port = post(client, "/api/decide", decision, origin="http://127.0.0.1:9999")
    assert other_port.status_code == 403
    fetched = post(client, "/api/decide", decision, **{"sec-fetch-site": "cross-site"})
    assert fetched.status_code == 403
    assert post(client, "/api/undo-decision", {"path": "train/cat/cat_1.png"},
                origin="null").status_code == 403
    assert read_decisions(split_audit) == {}
    own = post(client, "/api/decide", decision, origin=LOCAL, **{"sec-fetch-site": "same-origin"})
    assert own.status_code == 200 and read_decisions(split_audit)


def test_serving_without_an_audit_fails_before_listening(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no audit in"):
        serve_review(tmp_path / ".descend-audit", port=0, announce=lambda line: None)
