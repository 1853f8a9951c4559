"""``descend serve CKPT``: a web page to drop an image on, and ``POST /predict`` for programs.

The model is loaded once, before the server listens; Ctrl+C or SIGTERM stops the server once
the requests under way are answered. Every limit is a flag (`descend.serving.limits.Limits`
holds their defaults and the reasons for them).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from descend.cli import common

# The flags of `Limits`' fields (but --max-upload-mb, in MB): what each bounds, for --help.
LIMIT_HELP = {
    "max_pixels": "pixels of a decoded image; more are refused (422) from the file's header "
                  "(default: 40 million, or 1024 times the model's input pixels if more)",
    "max_in_flight": "requests decoded or predicted at once",
    "max_queue": "requests waiting for a place in flight; past them a 503 with Retry-After",
    "workers": "threads that decode uploads",
    "big_pixels": "pictures of more pixels (after a JPEG's reduced decode) are decoded one at "
                  "a time in a thread of their own",
    "max_batch_size": "requests run through the model as one batch (1: no batching)",
    "max_batch_wait_ms": "ms the first request of a batch waits for others",
    "max_connections": "open connections; past them the oldest idle one is closed for a new "
                       "one, or a 503 when every one is busy",
    "header_timeout": "seconds for a client to send a request's headers",
    "keep_alive_timeout": "seconds a connection may stay idle between requests",
    "body_timeout": "seconds an upload may pause (408 after)",
    "request_timeout": "seconds for a whole request: upload, queue, decoding, model",
    "shutdown_timeout": "seconds a stop (SIGTERM, Ctrl+C) waits for the requests under way",
}


def add_parser(sub: Any) -> None:
    from descend.errors import MissingExtraError

    try:
        from descend.serving.app import endpoints
        from descend.serving.limits import Limits
        defaults: dict[str, Any] = {f.name: f.default for f in fields(Limits)}
        ways = endpoints("and")
    except MissingExtraError:  # `descend serve` says which extra to install, at run time
        defaults, ways = {}, "its endpoints (pip install 'descend[serve]')"
    p = sub.add_parser("serve", help="serve a model: a web page and a JSON endpoint",
                       description="Serve a checkpoint: a page at / to drop or choose an image, "
                       f"and {ways}. POST /predict takes the image in the multipart field "
                       "'file' (optional ?top_k=N, ?explain=1 for a heat map of the evidence) "
                       "and answers JSON; GET /metrics is Prometheus'.")
    p.add_argument("checkpoint", help="a best.pt / last.pt, or a run folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only; "
                   "0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=8000,
                   help="port (default: %(default)s; 0 picks a free one)")
    p.add_argument("--top-k", type=int, default=3,
                   help="classes in an answer when the request does not say (default: "
                   "%(default)s)")
    common.add_device(p)
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a Host name to answer to besides the address listened on (and "
                   "localhost for 127.0.0.1); repeatable; '*' for any (default: none)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="another site whose pages may POST, e.g. https://example.org; "
                   "repeatable (default: the server's own page and programs only)")
    p.add_argument("--no-access-log", dest="access_log", action="store_false",
                   help="no JSON line per request on stderr (default: one per request)")
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-upload-mb", type=float,
                        default=defaults.get("max_upload_bytes", 0) / 2**20,
                        help="largest upload accepted, in MB; larger ones get 413 (default: "
                        "%(default)g)")
    for name, what in LIMIT_HELP.items():
        kind = float if "timeout" in name or name.endswith("_ms") else int
        default = defaults.get(name)
        limits.add_argument("--" + name.replace("_", "-"), type=kind, default=default,
                            help=what + (" (default: %(default)s)" if default is not None
                                         else ""))


def run(args: argparse.Namespace) -> int:
    import signal
    import sys

    from PIL import Image

    from descend.errors import ConfigError
    from descend.evaluation.predict import Classifier
    from descend.serving import Limits, bind, create_app, default_hosts, make_server, url
    from descend.serving.app import endpoints

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}")
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2**20),
                    **{name: getattr(args, name) for name in LIMIT_HELP})
    classifier = Classifier.load(args.checkpoint, args.device)
    max_pixels = limits.pixels_for(classifier.size, classifier.resize)
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        # Pillow refuses twice its own limit when it opens a file: --max-pixels raises both.
        Image.MAX_IMAGE_PIXELS = max_pixels
    sock = bind(args.host, args.port)
    app = create_app(classifier, checkpoint=str(args.checkpoint), top_k=args.top_k,
                     limits=limits, allowed_hosts=[*default_hosts(args.host), *args.allow_host],
                     allowed_origins=args.allow_origin,
                     access_log=sys.stderr if args.access_log else None)
    spec = classifier.loaded.spec
    print(f"descend serve: {url(sock)}/ (model {spec.name}, {len(classifier.classes)} classes, "
          f"{classifier.device}; {endpoints()}; Ctrl+C stops)",
          flush=True)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # uvicorn takes SIGTERM while it serves, finishes the requests under way, then raises the
    # signal again: here, so that a stop by SIGTERM ends as Ctrl+C does.
    signal.signal(signal.SIGTERM, stop)
    try:
        make_server(app, limits).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn finishes the requests under way, then re-raises Ctrl+C
        pass
    print("descend serve: stopped", flush=True)
    return 0
