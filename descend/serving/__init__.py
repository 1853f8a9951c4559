"""``descend serve``: a trained model behind a web page and a JSON endpoint (SPEC section 7)."""

from descend.serving.app import create_app
from descend.serving.server import bind, make_server, url

__all__ = ["bind", "create_app", "make_server", "url"]
