"""``descend serve CKPT``: a web page to drop an image on, and ``POST /predict`` for programs.

The model is loaded once, before the server listens; Ctrl+C stops the server.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve a model: a web page and a JSON endpoint",
                       description="Serve a checkpoint: a page at / to drop or choose an image, "
                       "POST /predict (multipart field 'file', optional ?top_k=N) answering "
                       "JSON, and GET /health.")
    p.add_argument("checkpoint", help="a best.pt / last.pt, or a run folder")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only; "
                   "0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=8000,
                   help="port (default: %(default)s; 0 picks a free one)")
    p.add_argument("--top-k", type=int, default=3,
                   help="classes in an answer when the request does not say (default: "
                   "%(default)s)")
    p.add_argument("--device", default="auto")
    p.add_argument("--max-upload-mb", type=float, default=10,
                   help="largest upload accepted, in MB; larger ones get 413 (default: "
                   "%(default)s)")


def run(args: argparse.Namespace) -> int:
    from descend.errors import ConfigError
    from descend.evaluation.predict import Classifier
    from descend.serving import bind, create_app, make_server, url

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}")
    if not args.max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb must be more than 0, got {args.max_upload_mb}")
    classifier = Classifier.load(args.checkpoint, args.device)
    app = create_app(classifier, checkpoint=str(args.checkpoint), top_k=args.top_k,
                     max_upload_bytes=int(args.max_upload_mb * 2**20))
    sock = bind(args.host, args.port)
    spec = classifier.loaded.spec
    print(f"descend serve: {url(sock)}/ (model {spec.name}, {len(classifier.classes)} classes, "
          f"{classifier.device}; POST /predict, GET /health; Ctrl+C stops)", flush=True)
    try:
        make_server(app).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn finishes the requests under way, then re-raises Ctrl+C
        pass
    print("descend serve: stopped", flush=True)
    return 0
