"""The web app of ``descend serve``: a page at ``/``, ``POST /predict`` and ``GET /health``.

Why Starlette on uvicorn: an ASGI server reads each upload asynchronously, so a slow client
sending a big photo holds no thread and blocks nobody else's request. Starlette is small and made
for exactly this (routing, multipart forms through python-multipart, a test client that needs no
socket); FastAPI would add pydantic and a schema layer for one endpoint, and the standard
library's ``http.server`` has one thread per connection and no multipart parser.

Decoding and the forward pass are CPU work: they run in a small bounded thread pool, never on the
event loop, so that a request being predicted does not stop the others being read. The upload
limit is enforced while the body arrives: a declared ``Content-Length`` over it is refused before
a byte is read, and a body that grows past it is cut off there, not read to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import torch.nn.functional as F
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive

from descend.data.images import BadImage
from descend.evaluation.predict import Classifier, Prediction

FIELD = "file"  # the form field that holds the image
# Room in a request body for the multipart boundaries and part headers around the file, so that
# a file of exactly the limit still goes through.
FORM_SLACK = 64 * 1024
# Threads that decode and predict. One forward pass already uses every core through torch's own
# threads; a second lets one request decode while another runs the model, and more would only
# queue inside torch while holding their images in memory.
WORKERS = 2
# Status of each reason `BadImage` gives for bytes (files on disk have more reasons).
STATUS = {"empty": 400, "not-an-image": 415, "corrupt": 422, "too-large": 422,
          "too-small": 422}
PAGE_HEADERS = {  # the page's own inline script and style only; previews are blob: URLs
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src blob:; connect-src 'self'",
    "X-Content-Type-Options": "nosniff",
}


class UploadTooLarge(Exception):
    """The request body passed the upload limit while being read."""


def error(status: int, message: str,
          headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(classifier: Classifier, *, checkpoint: str = "", top_k: int = 3,
               max_upload_bytes: int = 10 * 2**20, workers: int = WORKERS) -> Starlette:
    """The ASGI app serving ``classifier``; ``top_k`` is the default of ``?top_k=N``."""
    service = PredictionService(classifier, checkpoint, top_k, max_upload_bytes, workers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        service.executor.shutdown(wait=False, cancel_futures=True)

    routes = [Route("/", service.page, methods=["GET"]),
              Route("/health", service.health, methods=["GET"]),
              Route("/predict", service.predict, methods=["POST"])]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: http_error})


async def http_error(request: Request, exc: Exception) -> Response:
    """Routing's own errors (404, 405) as JSON that names the way in."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return error(405, f"{request.method} is not allowed on {request.url.path}; use "
                     f"{allowed}" + (f" with the image in the form field '{FIELD}'"
                                     if request.url.path == "/predict" else ""), exc.headers)
    if exc.status_code == 404:
        return error(404, f"nothing at {request.url.path}: the page is at /, the endpoints are "
                     "POST /predict and GET /health")
    return error(exc.status_code, str(exc.detail), exc.headers)


class PredictionService:
    """The endpoints, around one loaded classifier and the threads that run it."""

    def __init__(self, classifier: Classifier, checkpoint: str, top_k: int,
                 max_upload_bytes: int, workers: int) -> None:
        self.classifier, self.checkpoint, self.top_k = classifier, checkpoint, top_k
        self.max_upload_bytes = max_upload_bytes
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="descend-predict")
        self.html = resources.files("descend.serving").joinpath("page.html").read_text("utf-8")

    async def page(self, request: Request) -> Response:
        return HTMLResponse(self.html, headers=PAGE_HEADERS)

    async def health(self, request: Request) -> Response:
        spec = self.classifier.loaded.spec
        return JSONResponse({
            "status": "ok", "model": spec.name, "classes": len(self.classifier.classes),
            "class_names": self.classifier.classes, "checkpoint": self.checkpoint,
            "device": str(self.classifier.device), "input_size": list(spec.image_size),
            "top_k": self.top_k, "max_upload_bytes": self.max_upload_bytes,
        })

    async def predict(self, request: Request) -> Response:
        top_k = request.query_params.get("top_k", str(self.top_k))
        if not top_k.isdigit() or int(top_k) < 1:
            return error(400, f"top_k must be a whole number of at least 1, got {top_k!r}")
        too_large = self.too_large_message()
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_upload_bytes + FORM_SLACK:
            return error(413, too_large)  # refused before a byte of the body is read
        try:
            data, name = await self.read_upload(request)
        except UploadTooLarge:
            return error(413, too_large)
        except ValueError as e:  # the form's own problem, said in the message
            return error(400, str(e))
        loop = asyncio.get_running_loop()
        try:
            prediction = await loop.run_in_executor(self.executor, self.predict_bytes, data,
                                                    name, int(top_k))
        except BadImage as e:
            return error(STATUS.get(e.reason, 422), bad_image_message(e))
        return JSONResponse(prediction.to_dict())

    def too_large_message(self) -> str:
        return (f"the upload is over this server's limit of {self.max_upload_bytes / 2**20:g} MB; "
                "send a smaller image (the server sets the limit with --max-upload-mb)")

    async def read_upload(self, request: Request) -> tuple[bytes, str]:
        """The bytes and file name of the form's ``file`` field; `ValueError` says what is
        wrong with the form, `UploadTooLarge` stops the reading at the limit."""
        capped = Request(request.scope, capped_receive(request.receive,
                                                       self.max_upload_bytes + FORM_SLACK))
        how = (f"send the image as multipart/form-data in the field '{FIELD}', e.g. "
               f"curl -F {FIELD}=@photo.jpg {request.base_url}predict")
        try:
            form = await capped.form(max_files=1, max_fields=8)
        except (MultiPartException, HTTPException) as e:
            detail = e.message if isinstance(e, MultiPartException) else e.detail
            raise ValueError(f"the form could not be read ({detail}); {how}") from None
        except ClientDisconnect:
            raise ValueError("the client left before the upload ended") from None
        try:
            upload = form.get(FIELD)
            if upload is None:
                raise ValueError(f"no field '{FIELD}' in the request; {how}")
            if not isinstance(upload, UploadFile):
                raise ValueError(f"the field '{FIELD}' holds text, not a file; {how}")
            name = os.path.basename(upload.filename or "") or "upload"
            return await upload.read(), name
        finally:
            await form.close()

    def predict_bytes(self, data: bytes, name: str, top_k: int) -> Prediction:
        """The top classes of one encoded image, decoded as the run decoded its training images
        (in a worker thread)."""
        try:
            pixels = self.classifier.to_pixels(data)
        except BadImage as e:
            raise BadImage(name, e.reason, e.detail) from None
        except Exception as e:  # a conversion Pillow cannot do: the file's fault, as in training
            raise BadImage(name, "corrupt", f"{type(e).__name__}: {e}") from None
        probs = F.softmax(self.classifier.logits(pixels[None]), dim=1)
        return self.classifier.top(probs, [name], top_k)[0]


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
        "too-large": f"too many pixels ({e.detail}); upload a smaller image",
        "too-small": f"too small ({e.detail}); upload a bigger image",
    }
    return f"{e.path}: {fixes.get(e.reason, f'{e.reason} ({e.detail})')}"
