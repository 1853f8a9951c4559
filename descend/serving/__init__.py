"""``descend serve``: a trained model behind a web page and a JSON endpoint (SPEC section 7)."""

from descend.extras import require

require("serve", "descend serve")

from descend.serving.app import create_app
from descend.serving.guard import default_hosts
from descend.serving.limits import Limits, pixel_limit
from descend.serving.server import bind, make_server, url

__all__ = ["Limits", "bind", "create_app", "default_hosts", "make_server", "pixel_limit", "url"]
