"""Every limit of ``descend serve`` in one place, each with the reason for its default.

The defaults suit one small machine (2 cores, a few GB) serving a model that sees small images;
each is a flag of ``descend serve`` (`descend.cli.serve`) of the same name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from descend.errors import ConfigError

# Room in a request body for the multipart boundaries and part headers around the file, so that
# a file of exactly --max-upload-mb still goes through.
FORM_SLACK = 64 * 1024
# A photo of an ordinary camera passes: 12-24 MP phones, 24-45 MP cameras. Past it the work of a
# request is set by the picture, not by the model: a model that sees 32x32 gains nothing from
# 40 MP, and a 16-bit PNG of 40 MP is 80 MB decoded (4 bytes a pixel for RGB, 32-bit, float).
MIN_PIXEL_LIMIT = 40_000_000
# A model with a big input keeps 32 times its side on each side of a picture: the first
# 1024-fold reduction is a box filter that costs little, and a 224x224 model admits 51 MP.
PIXELS_PER_INPUT_PIXEL = 1024


def pixel_limit(size: tuple[int, int], resize: int | None = None) -> int:
    """The default ``--max-pixels`` for a model decoding to ``size`` (h, w), after scaling the
    shorter side to ``resize`` when the run did."""
    side = max(resize or 0, *size)
    return max(MIN_PIXEL_LIMIT, PIXELS_PER_INPUT_PIXEL * side * side)


@dataclass(frozen=True)
class Limits:
    """What one server admits, and for how long it waits."""

    # Largest upload. A 24 MP JPEG is 5-10 MB.
    max_upload_bytes: int = 10 * 2**20
    # Pixels of a decoded image; None: `pixel_limit` of the model's input size.
    max_pixels: int | None = None
    # Requests being decoded or run through the model at once. Their decoding runs in `workers`
    # threads; more in flight fill batches for the model (and hold at most an upload each).
    max_in_flight: int = 16
    # Requests waiting for a place in flight; past them a 503 with Retry-After comes at once,
    # rather than an answer that arrives after the client has given up.
    max_queue: int = 32
    # Threads that decode uploads. Decoding holds one picture in memory per thread; two use the
    # two cores while the model's thread waits for a batch.
    workers: int = 2
    # Pictures of more pixels than this (counted after a JPEG's reduced decode) are decoded one
    # at a time, in a thread of their own: a few big ones at once neither hold the memory of
    # several (a 40 MP 16-bit PNG is 80 MB decoded, a 32-bit TIFF 160 MB) nor keep the
    # ordinary photos waiting behind them. 4 MP: a 2000x2000 PNG decodes in 30-40 ms here.
    big_pixels: int = 4_000_000
    # Requests run through the model as one batch: one forward pass of 16 small images costs
    # little more than one (B7: 2.3-3.1 times the requests/s of one at a time). As many as
    # are in flight, so that every request in flight can share a pass.
    max_batch_size: int = 16
    # How long the first request of a batch waits for others to join it, in ms: under load a
    # batch fills in that time; at rest a lone request pays it for nothing, so it stays small.
    # Requests that arrive while a batch is in the model form the next one without waiting.
    max_batch_wait_ms: float = 2.0
    # Open connections. Past them the oldest connection without a request under way (idle, or
    # still sending its headers) is closed for the new one; when every one is busy the new one
    # gets a 503. Well under the usual 1024 open files.
    max_connections: int = 256
    # Seconds for a client to send its request line and headers, from connecting or from the
    # end of its last answer: a slow or half-sent request cannot hold a connection longer.
    header_timeout: float = 10.0
    # Seconds a kept-alive connection may stay idle between requests.
    keep_alive_timeout: float = 5.0
    # Seconds the body may pause between two of its pieces (a stalled upload).
    body_timeout: float = 10.0
    # Seconds for a whole request: reading, waiting in the queue, decoding, the model. A 10 MB
    # upload at 2 Mbit/s takes 40 s.
    request_timeout: float = 60.0
    # Seconds a SIGTERM waits for the requests under way to finish before closing them.
    shutdown_timeout: float = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            least = 0 if f.name == "max_queue" else 1e-9  # no queue: refuse when all are busy
            if value is not None and not value >= least:
                flag = ("--max-upload-mb" if f.name == "max_upload_bytes" else
                        "--" + f.name.replace("_", "-"))
                raise ConfigError(f"{flag} must be {'at least 0' if least == 0 else 'more than 0'}"
                                  f", got {value}")

    @property
    def max_body_bytes(self) -> int:
        return self.max_upload_bytes + FORM_SLACK

    def pixels_for(self, size: tuple[int, int], resize: int | None = None) -> int:
        return self.max_pixels if self.max_pixels is not None else pixel_limit(size, resize)
