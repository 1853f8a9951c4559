"""The web app of ``descend serve``: a page at ``/``, ``POST /predict``, ``GET /health`` and
``GET /metrics``.

Why Starlette on uvicorn: an ASGI server reads each upload asynchronously, so a slow client
sending a big photo holds no thread and blocks nobody else's request. Starlette is small and made
for exactly this (routing, multipart forms through python-multipart, a test client that needs no
socket); FastAPI would add pydantic and a schema layer for one endpoint, and the standard
library's ``http.server`` has one thread per connection and no multipart parser.

A prediction goes: the query checked; the upload read, within its size limit (a declared
``Content-Length`` over it is refused before a byte is read, a body that grows past it is cut off
there); a place in flight (`Admission`: a 503 at once when there is none to wait for); the image
decoded in a small thread pool, within a pixel limit derived from the model's input size; the
pixels run through the model in a batch with those of other requests (`Batcher`). The upload
stays in its spooled file (on disk past 1 MB) until a decoding thread reads it, so that the
requests waiting hold no image in memory. `Guard` (`descend.serving.guard`) wraps it all.

``?explain=1`` adds a heat map of the evidence for the top class (`descend.evaluation.explain`:
Grad-CAM, or Integrated Gradients for a model without convolutions), drawn over the picture the
model saw. An explanation costs a backward pass (Integrated Gradients: 32), so explaining
requests go one at a time (`PredictionService.explaining`, with a queue of ``--max-queue``):
at most one of them holds a place in flight, and the batches of plain predictions wait behind
at most one explanation in the model's thread, where it runs (`Batcher.call`): its tta off and
its hooks on the model are never seen by a batch.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import io
import os
import re
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import BinaryIO, TextIO

import torch
import torch.nn.functional as F
from PIL import Image
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive

from descend.data.images import BadImage
from descend.evaluation.explain import Explainer
from descend.evaluation.predict import Classifier
from descend.registry import name_list
from descend.serving.batching import Admission, Batcher, Busy
from descend.serving.guard import (
    CLOSE,
    LOCAL_NAMES,
    Guard,
    HostPolicy,
    drain,
    error,
    exception_handlers,
)
from descend.serving.limits import Limits
from descend.serving.metrics import CONTENT_TYPE, Metrics

FIELD = "file"  # the form field that holds the image
# ?top_k=N: ASCII digits only (str.isdigit also takes "²" and "٣", which int() refuses or
# reads), at most this many, and a value no answer needs more of.
TOP_K = re.compile(r"[0-9]{1,4}")
MAX_TOP_K = 1000
# ?explain=1 explains the top class; 0, as absent, does not (the answer is the plain one).
EXPLAIN = {"0": False, "1": True}
QUERY = ("top_k", "explain")
NAME_CHARS = 255  # of an upload's file name in an answer: a file system's longest name
# Status of each reason `BadImage` gives for bytes (files on disk have more reasons).
STATUS = {"empty": 400, "not-an-image": 415, "corrupt": 422, "too-large": 422,
          "too-small": 422}
PAGE_HEADERS = {  # the page's own inline script and style only; previews are blob: URLs,
    # explanations the data: URLs of the answers
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src blob: data:; connect-src 'self'; "
    "frame-ancestors 'none'",
}


class UploadTooLarge(Exception):
    """The request body passed the upload limit while being read."""


def create_app(classifier: Classifier, *, checkpoint: str = "", top_k: int = 3,
               limits: Limits | None = None, allowed_hosts: Iterable[str] = LOCAL_NAMES,
               allowed_origins: Iterable[str] = (), access_log: TextIO | None = None) -> Guard:
    """The ASGI app serving ``classifier``; ``top_k`` is the default of ``?top_k=N``.

    ``allowed_hosts``: the ``Host`` names answered ("*": any); ``allowed_origins``: other
    sites whose pages may POST; ``access_log``: a stream for one JSON line per request.
    """
    limits = limits or Limits()
    metrics = Metrics(path for _, path, _ in ENDPOINTS)
    service = PredictionService(classifier, checkpoint, top_k, limits, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        service.close()

    routes = [Route(path, getattr(service, handler), methods=[method])
              for method, path, handler in ENDPOINTS]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error,
                                        **exception_handlers(limits)})
    app.state.service = service
    policy = HostPolicy(allowed_hosts, allowed_origins)
    return Guard(app, policy, limits, metrics, access_log)


# The way in: (method, path, the `PredictionService` method that answers). The routes, the 404
# answer, /metrics' path labels and the command's own lines are made from this table.
ENDPOINTS = (("GET", "/", "page"), ("POST", "/predict", "predict"), ("GET", "/health", "health"),
             ("GET", "/metrics", "exposition"))


def endpoints(last: str = ",") -> str:
    """The endpoints besides the page: "POST /predict, GET /health and GET /metrics" (``last``
    "and") or with commas alone (``last`` ",")."""
    named = [f"{method} {path}" for method, path, _ in ENDPOINTS if path != "/"]
    return ", ".join(named) if last == "," else name_list(named, last)


async def http_error(request: Request, exc: Exception) -> Response:
    """Routing's own errors (404, 405) as JSON that names the way in."""
    assert isinstance(exc, HTTPException)
    path = request.url.path[:100]
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return error(405, f"{request.method} is not allowed on {path}; use "
                     f"{allowed}" + (f" with the image in the form field '{FIELD}'"
                                     if path == "/predict" else ""), exc.headers)
    if exc.status_code == 404:
        return error(404, f"nothing at {path}: the page is at /, the endpoints are "
                     f"{endpoints('and')}")
    return error(exc.status_code, str(exc.detail), exc.headers)


class PredictionService:
    """The endpoints, around one loaded classifier, its decoding threads and its batcher."""

    def __init__(self, classifier: Classifier, checkpoint: str, top_k: int, limits: Limits,
                 metrics: Metrics) -> None:
        self.classifier, self.top_k, self.limits = classifier, top_k, limits
        # A name, never a path: an answer must not tell a client where the machine keeps runs.
        self.checkpoint = os.path.basename(os.path.normpath(checkpoint)) if checkpoint else ""
        self.max_pixels = limits.pixels_for(classifier.size, classifier.resize)
        self.decoders = ThreadPoolExecutor(limits.workers, thread_name_prefix="descend-decode")
        self.big_decoder = ThreadPoolExecutor(1, thread_name_prefix="descend-decode-big")
        self.admission = Admission(limits.max_in_flight, limits.max_queue)
        # Requests with ?explain=1 enter one at a time, before their place in flight (see the
        # module's docstring).
        self.explaining = Admission(1, limits.max_queue)
        self.batcher = Batcher(self.probabilities, limits.max_batch_size,
                               limits.max_batch_wait_ms / 1000,
                               on_batch=metrics.batch_size.observe)
        self.explainer: Explainer | None = None  # made in the model's thread, when first asked
        self.counters = metrics
        metrics.watch(lambda: self.admission.active,
                      lambda: self.admission.waiting + self.explaining.waiting)
        self.html = resources.files("descend.serving").joinpath("page.html").read_text("utf-8")

    def close(self) -> None:
        self.batcher.close()
        for pool in (self.decoders, self.big_decoder):
            pool.shutdown(wait=False, cancel_futures=True)

    async def page(self, request: Request) -> Response:
        return HTMLResponse(self.html, headers=PAGE_HEADERS)

    async def health(self, request: Request) -> Response:
        spec = self.classifier.loaded.spec
        return JSONResponse({
            "status": "ok", "model": spec.name, "classes": len(self.classifier.classes),
            "class_names": self.classifier.classes, "checkpoint": self.checkpoint,
            "device": str(self.classifier.device), "input_size": list(spec.image_size),
            "top_k": self.top_k, "max_upload_bytes": self.limits.max_upload_bytes,
            "max_pixels": self.max_pixels,
        })

    async def exposition(self, request: Request) -> Response:
        """The counters in Prometheus's text format."""
        return Response(self.counters.text(), media_type=CONTENT_TYPE)

    async def predict(self, request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > \
                self.limits.max_body_bytes:
            return error(413, self.too_large_message(), CLOSE)  # before a byte of the body
        try:
            top_k, explain = self.query(request)
        except ValueError as e:
            # The body is read (and dropped) first, within the limit: a client that sends it
            # all before reading an answer would find the connection reset instead.
            if not await drain(request.receive, self.limits.max_body_bytes):
                return error(413, self.too_large_message(), CLOSE)
            return error(400, str(e))
        try:
            form, upload, name = await self.read_upload(request)
        except UploadTooLarge:
            return error(413, self.too_large_message(), CLOSE)
        except ValueError as e:  # the form's own problem, said in the message
            return error(400, str(e))
        try:
            async with self.explaining.slot() if explain else contextlib.nullcontext():
                async with self.admission.slot():
                    loop = asyncio.get_running_loop()
                    cost = await loop.run_in_executor(self.decoders, decode_cost, upload.file)
                    lane = self.big_decoder if cost > self.limits.big_pixels else self.decoders
                    pixels = await loop.run_in_executor(lane, self.decode, upload.file, name)
                    probs = await self.batcher.submit(pixels)
                    prediction = self.classifier.top(probs[None], [name], top_k)[0]
                    answer = prediction.to_dict()
                    if explain:
                        answer["explanation"] = await self.explanation(pixels,
                                                                       prediction.top[0][0])
        except Busy as e:
            if e.args[0] is self.explaining:
                self.counters.refused.labels("explain-busy").inc()
                return error(503, "the server is busy explaining (one explanation at a time, "
                             f"with {self.limits.max_queue} waiting); retry in a second, or "
                             "ask without ?explain=1", {"retry-after": "1"})
            self.counters.refused.labels("busy").inc()
            return error(503, f"the server is busy ({self.limits.max_in_flight} requests in "
                         f"flight and {self.limits.max_queue} waiting); retry in a second",
                         {"retry-after": "1"})
        except BadImage as e:
            return error(STATUS.get(e.reason, 422), bad_image_message(e))
        finally:
            await form.close()
        return JSONResponse(answer)

    def query(self, request: Request) -> tuple[int, bool]:
        """(``?top_k=N`` or the server's default, ``?explain=1``); `ValueError` for anything
        else in the query."""
        items = request.query_params.multi_items()
        unknown = sorted({k for k, _ in items} - set(QUERY))
        if unknown:
            listed = ", ".join(repr(k[:40]) for k in unknown[:3])
            raise ValueError(f"unknown query parameter(s) {listed}: /predict takes only "
                             "?top_k=N and ?explain=1")
        given = {key: [v for k, v in items if k == key] for key in QUERY}
        for key, values in given.items():
            if len(values) > 1:
                raise ValueError(f"{key} is given {len(values)} times; give it once")
        top_k, explain = self.top_k, False
        if given["top_k"]:
            value = given["top_k"][0]
            if not TOP_K.fullmatch(value) or not 1 <= int(value) <= MAX_TOP_K:
                raise ValueError(f"top_k must be a whole number from 1 to {MAX_TOP_K} in "
                                 f"ASCII digits, got {value[:20]!r}")
            top_k = int(value)
        if given["explain"]:
            value = given["explain"][0]
            if value not in EXPLAIN:
                raise ValueError("explain must be 1 (add a heat map of the evidence for the "
                                 f"top class) or 0 (none), got {value[:20]!r}")
            explain = EXPLAIN[value]
        return top_k, explain

    def too_large_message(self) -> str:
        return (f"the upload is over this server's limit of "
                f"{self.limits.max_upload_bytes / 2**20:g} MB; send a smaller image (the "
                "server sets the limit with --max-upload-mb)")

    async def read_upload(self, request: Request) -> tuple[FormData, UploadFile, str]:
        """The form, its ``file`` field and the file's name (the form to be closed by the
        caller); `ValueError` says what is wrong with the form, `UploadTooLarge` stops the
        reading at the limit."""
        capped = Request(request.scope, capped_receive(request.receive,
                                                       self.limits.max_body_bytes))
        how = (f"send the image as multipart/form-data in the field '{FIELD}', e.g. "
               f"curl -F {FIELD}=@photo.jpg {request.base_url}predict")
        try:
            form = await capped.form(max_files=1, max_fields=8)
        except (MultiPartException, HTTPException) as e:
            if header_too_long(e):
                raise ValueError("a part header of the form is over 4 KB: most likely the "
                                 "file name; rename the file to a shorter name") from None
            detail = e.message if isinstance(e, MultiPartException) else e.detail
            raise ValueError(f"the form could not be read ({detail}); {how}") from None
        except ClientDisconnect:
            raise ValueError("the client left before the upload ended") from None
        upload = form.get(FIELD)
        if isinstance(upload, UploadFile):
            name = os.path.basename(upload.filename or "")[:NAME_CHARS] or "upload"
            return form, upload, name
        await form.close()
        if upload is None:
            raise ValueError(f"no field '{FIELD}' in the request; {how}")
        raise ValueError(f"the field '{FIELD}' holds text, not a file; {how}")

    def decode(self, file: BinaryIO, name: str) -> torch.Tensor:
        """The pixels of one uploaded image, decoded as the run decoded its training images
        (in a decoding thread)."""
        file.seek(0)
        data = file.read()
        try:
            return self.classifier.to_pixels(data, max_pixels=self.max_pixels)
        except BadImage as e:
            raise BadImage(name, e.reason, e.detail) from None
        except Exception as e:  # a conversion Pillow cannot do: the file's fault, as in training
            raise BadImage(name, "corrupt", f"{type(e).__name__}: {e}") from None

    def probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (N, classes) of a batch of decoded images (in the model's
        thread)."""
        return F.softmax(self.classifier.logits(pixels), dim=1)

    async def explanation(self, pixels: torch.Tensor, name: str) -> dict[str, object]:
        """The ``explanation`` of an answer: how it was made, the class explained (``name``,
        the answer's top one) and the picture the model saw under its heat map, as a PNG in a
        data: URL."""
        target = self.classifier.classes.index(name)
        heat = await self.batcher.call(functools.partial(self.heat_map, pixels, target))
        assert self.explainer is not None  # made by heat_map
        overlay = await asyncio.get_running_loop().run_in_executor(
            self.decoders, overlay_url, pixels, heat)
        return {**self.explainer.describe(), "class": name, "overlay": overlay}

    def heat_map(self, pixels: torch.Tensor, target: int) -> torch.Tensor:
        """The heat map (H, W) of decoded ``pixels`` (C, H, W) for class ``target`` (in the
        model's thread: `Batcher.call`)."""
        if self.explainer is None:  # its layer is found by a forward pass of the model
            self.explainer = Explainer(self.classifier.loaded, self.classifier.device)
        return self.explainer.maps(pixels[None], torch.tensor([target]))[0]


def overlay_url(pixels: torch.Tensor, heat: torch.Tensor) -> str:
    """``data:image/png;base64,...``: the picture ``pixels`` (uint8 C, H, W) under its heat map
    ``heat`` (H, W), at the size the model saw it."""
    from descend.reports.plots import heat_overlay  # matplotlib: only for a server that explains

    buf = io.BytesIO()
    Image.fromarray(heat_overlay(pixels, heat)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def decode_cost(file: BinaryIO) -> int:
    """The pixels decoding ``file`` will make, from its header: a JPEG's at the 1/8 scale of
    its reduced decode (`descend.data.images`), since the model's input is far smaller. 0
    when the header cannot be read: the decoder then says what is wrong."""
    file.seek(0)
    try:
        with Image.open(file) as im:
            pixels = im.width * im.height
            return pixels // 64 if im.format == "JPEG" else pixels
    except Exception:
        return 0


def header_too_long(e: BaseException) -> bool:
    """Whether python-multipart refused a part header over its 4 KB (Starlette says only
    "Invalid multipart data.", the cause is down the exception's chain)."""
    seen: BaseException | None = e
    for _ in range(4):
        if seen is None:
            return False
        if "maximum header size" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def capped_receive(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises `UploadTooLarge` as soon as the body passes ``limit`` bytes."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise UploadTooLarge
        return message

    return capped


def bad_image_message(e: BadImage) -> str:
    fixes = {
        "empty": "the file is empty (zero bytes); choose an image file",
        "not-an-image": "not an image (Pillow cannot identify it); upload a PNG, JPEG, GIF, "
                        "BMP, WebP or TIFF file",
        "corrupt": f"a broken or truncated image ({e.detail}); upload the whole file again, "
                   "or another image",
        "too-large": f"too many pixels ({e.detail}); upload a smaller image (the server sets "
                     "the limit with --max-pixels)",
        "too-small": f"too small ({e.detail}); upload a bigger image",
    }
    return f"{e.path}: {fixes.get(e.reason, f'{e.reason} ({e.detail})')}"
