"""The review page of an audit: its suspects and duplicate pairs as a grid of images, decided
on one at a time from the keyboard or the mouse, each decision written at once.

``GET /`` the page; ``GET /api/audit?view=suspects|duplicates&page=N&per_page=24`` a page of
findings with their decisions; ``GET /image?path=P`` one of the audit's images;
``POST /api/decide`` ``{"path", "action", "to"}`` and ``POST /api/undo-decision`` ``{"path"}``.

The server holds a person's dataset and can move its files (through the decisions), so it
answers only its own page, behind ``descend serve``'s `Guard`: a ``Host`` that is not one of its
names is refused (DNS rebinding: a hostile site whose name resolves to 127.0.0.1 would otherwise
be same-origin with it), a POST must be JSON (a cross-site form cannot send that without asking
first) from no other ``Origin``, and ``/image`` serves the files the audit names and nothing
else, never one that leads outside the dataset.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from descend.audit.decisions import (
    AuditFolder,
    forget_decision,
    read_decisions,
    record_decision,
    unresolved,
)
from descend.audit.records import Decision, Duplicate, Suspect
from descend.data.images import BadImage, open_image
from descend.errors import DescendError
from descend.serving.guard import (
    LOCAL_NAMES,
    SECURITY_HEADERS,
    Guard,
    HostPolicy,
    default_hosts,
    error,
    exception_handlers,
)
from descend.serving.limits import Limits
from descend.serving.server import bind, make_server, url

PER_PAGE = 24  # tiles a page: four rows of six on a laptop screen
MAX_PER_PAGE = 200
THUMBNAIL = 256  # pixels on the long side: a tile shows at most 160, a sharp screen twice that
# Served as they are when small enough: every browser shows these.
WEB_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}
MAX_BODY = 16 * 1024  # of a decision: a path and two words
NUMBER = re.compile(r"[0-9]{1,6}")
# No answer but the page loads anything: a JSON or an image answer opened on its own runs nothing.
HEADERS = {**SECURITY_HEADERS,
           "content-security-policy": "default-src 'none'; frame-ancestors 'none'"}
PAGE_HEADERS = {  # the page's own inline script and style, and images from this server only
    "content-security-policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "cache-control": "no-store",
}
# What a refused request is told: the review has no flags to allow other names or sites.
REFUSALS = {
    "wrong_host": "this server does not answer to the host name in the request: open the "
                  "address it printed when it started",
    "cross_site": "a cross-site request: this server takes decisions from its own page",
    "cross_site_fetch": "a cross-site request (Sec-Fetch-Site): decide from the review page",
}


def create_review_app(audit_dir: Path, allowed_hosts: Iterable[str] = LOCAL_NAMES) -> ASGIApp:
    """The review app of the audit in ``audit_dir`` (``PATH/.descend-audit``), answering
    requests for the names in ``allowed_hosts``, behind `descend serve`'s `Guard`; `DataError`
    if there is no audit there."""
    review = Review(AuditFolder.load(audit_dir))
    limits = Limits(max_upload_bytes=MAX_BODY)
    routes = [Route("/", review.page, methods=["GET"]),
              Route("/api/audit", review.listing, methods=["GET"]),
              Route("/image", review.image, methods=["GET"]),
              Route("/api/decide", review.decide, methods=["POST"]),
              Route("/api/undo-decision", review.forget, methods=["POST"])]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error,
                                                       **exception_handlers(limits)})
    app.state.review = review
    return Guard(app, HostPolicy(allowed_hosts, **REFUSALS), limits, headers=HEADERS)


def serve_review(audit_dir: Path, host: str = "127.0.0.1", port: int = 8765,
                 announce: Callable[[str], None] = print) -> None:
    """Serve the review of ``audit_dir`` until interrupted; ``announce`` is told its URL."""
    app = create_review_app(audit_dir, default_hosts(host))  # no audit: fail before listening
    sock = bind(host, port)
    try:
        announce(f"review the audit at {url(sock)}/ (Ctrl-C to stop)")
        make_server(app).run(sockets=[sock])
    finally:
        sock.close()


async def http_error(request: Request, exc: Exception) -> Response:
    """Routing's own errors (404, 405) as JSON."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error(404, f"nothing at {request.url.path[:100]}: the page is at /")
    return error(exc.status_code, str(exc.detail), exc.headers)


class Review:
    """The endpoints, around one audit."""

    def __init__(self, found: AuditFolder) -> None:
        self.found, self.audit = found, found.audit
        self.paths = found.audit.paths
        self.html = resources.files("descend.audit").joinpath("page.html").read_text("utf-8")

    async def page(self, request: Request) -> Response:
        return HTMLResponse(self.html, headers=PAGE_HEADERS)

    def listing(self, request: Request) -> Response:
        """One page of suspects or duplicate pairs, with the decisions on their files."""
        query = request.query_params
        view = query.get("view", "suspects")
        if view not in ("suspects", "duplicates"):
            return error(400, f"view must be suspects or duplicates, got {view[:40]!r}")
        numbers = {}
        for name, default, top in (("page", 1, 10**6), ("per_page", PER_PAGE, MAX_PER_PAGE)):
            value = query.get(name, str(default))
            if not NUMBER.fullmatch(value) or not 1 <= int(value) <= top:
                return error(400, f"{name} must be a whole number from 1 to {top}, "
                             f"got {value[:40]!r}")
            numbers[name] = int(value)
        page, per_page = numbers["page"], numbers["per_page"]
        decisions = read_decisions(self.found.folder)  # the file: it may be edited beside us
        findings = self.audit.suspects if view == "suspects" else self.audit.duplicates
        shown = findings[(page - 1) * per_page:page * per_page]
        left = unresolved(self.audit, decisions)
        return JSONResponse({
            "data": self.audit.data, "classes": list(self.audit.classes), "view": view,
            "page": page, "per_page": per_page, "total": len(findings),
            "pages": max(1, -(-len(findings) // per_page)),
            "items": [suspect_json(s, decisions) if isinstance(s, Suspect) else
                      duplicate_json(s, decisions) for s in shown],
            "counts": {"suspects": len(self.audit.suspects),
                       "duplicates": len(self.audit.duplicates),
                       "suspects_left": len(left.suspects),
                       "duplicates_left": len(left.duplicates)},
        }, headers={"cache-control": "no-store"})

    def image(self, request: Request) -> Response:
        """One of the audit's images: as it is when a browser shows it and it is small, else
        a thumbnail of at most `THUMBNAIL` pixels."""
        path = request.query_params.get("path", "")
        if path not in self.paths:  # only these, never a path the request makes up
            return error(404, "not an image of this audit: ask for a path /api/audit gives")
        root = os.path.realpath(self.found.root)
        real = os.path.realpath(self.found.root / path)
        if not real.startswith(root + os.sep) or not os.path.isfile(real):
            # Moved by an apply, deleted, or a link that leads out of the dataset.
            return error(404, f"{path} is not in the dataset now (moved or deleted since the "
                         "audit?)")
        try:
            with open(real, "rb") as f:
                data = f.read()
            with Image.open(io.BytesIO(data)) as im:
                kind, size = im.format, im.size
            if kind in WEB_TYPES and max(size) <= THUMBNAIL:
                return Response(data, media_type=WEB_TYPES[kind], headers=cache())
            picture = open_image(data, draft=(THUMBNAIL, THUMBNAIL))
        except (OSError, BadImage, Image.DecompressionBombError) as e:
            return error(415, f"{path} cannot be shown: {e}")
        picture.thumbnail((THUMBNAIL, THUMBNAIL))
        out = io.BytesIO()
        if kind == "JPEG":  # a photo stays a (smaller) JPEG; PNG keeps drawings sharp
            picture.save(out, "JPEG", quality=85)
        else:
            picture.save(out, "PNG")
        return Response(out.getvalue(), media_type="image/jpeg" if kind == "JPEG" else
                        "image/png", headers=cache())

    async def decide(self, request: Request) -> Response:
        """``{"path", "action", "to"}``: record a decision; the file moves only on apply."""
        body = await json_request(request)
        if isinstance(body, Response):
            return body
        path, action, to = body.get("path"), body.get("action"), body.get("to")
        if not isinstance(path, str) or not isinstance(action, str) or \
                not (to is None or isinstance(to, str)):
            return error(400, 'send {"path": "...", "action": "keep" | "relabel" | "drop", '
                         '"to": "<class>" (relabel only)}')
        try:
            decision = await run_in_threadpool(record_decision, self.found, path, action, to)
        except DescendError as e:
            return error(400, str(e))
        return JSONResponse({"path": path, "decision": decision.to_json()})

    async def forget(self, request: Request) -> Response:
        """``{"path"}``: take back the decision on a file."""
        body = await json_request(request)
        if isinstance(body, Response):
            return body
        path = body.get("path")
        if not isinstance(path, str) or path not in self.paths:
            return error(400, 'send {"path": "..."}, a path of this audit')
        try:
            await run_in_threadpool(forget_decision, self.found, path)
        except DescendError as e:
            return error(400, str(e))
        return JSONResponse({"path": path, "decision": None})


async def json_request(request: Request) -> dict[str, object] | Response:
    """The request's JSON object, or the error answer to send instead."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        return error(415, "send the decision as JSON (Content-Type: application/json)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return error(413, f"a decision is at most {MAX_BODY} bytes")
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return error(400, f"the body is not JSON ({e})")
    if not isinstance(value, dict):
        return error(400, "send a JSON object")
    return value


def cache() -> dict[str, str]:
    # The file at a path changes only when the decisions are applied: a short time is safe.
    return {"cache-control": "private, max-age=300"}


def suspect_json(s: Suspect, decisions: dict[str, Decision]) -> dict[str, object]:
    """A suspect as the page shows it: as in audit.json, less its place in the pool, with its
    top three classes and the decision on its file."""
    shown = s.to_json()
    del shown["index"]
    top = sorted(s.probabilities.items(), key=lambda kv: -kv[1])[:3]
    return {**shown, "probabilities": dict(top),
            "decision": decision_json(decisions, s.path)}


def duplicate_json(d: Duplicate, decisions: dict[str, Decision]) -> dict[str, object]:
    """A pair as the page shows it: as in audit.json, less its places in the pool, with the
    decision on each side."""
    shown = d.to_json()
    del shown["index_a"], shown["index_b"]
    return {**shown, "decisions": {"a": decision_json(decisions, d.a),
                                   "b": decision_json(decisions, d.b)}}


def decision_json(decisions: dict[str, Decision], path: str | None) -> dict[str, str] | None:
    decision = decisions.get(path) if path is not None else None
    return None if decision is None else decision.to_json()
