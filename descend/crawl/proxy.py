"""Proxies named in the environment, with the address policy applied to the proxy hop too.

The variables are read as urllib reads them (`urllib.request.getproxies_environment` and
`proxy_bypass_environment`: the environment only, not the proxy settings of macOS or Windows):

- ``http_proxy`` / ``HTTP_PROXY`` for http:// URLs, ``https_proxy`` / ``HTTPS_PROXY`` for
  https:// ones, ``all_proxy`` / ``ALL_PROXY`` for either when its own is unset; the lower-case
  name wins, and a value without a scheme (``proxy:3128``) means http://, as in curl;
- ``no_proxy`` / ``NO_PROXY``: comma-separated hosts (``localhost``, ``10.0.0.7``, with or
  without ``:port``) and domains (``example.com`` also covers ``www.example.com``), or ``*``;
  no address ranges. Those hosts are reached directly, through the guarded pool.

Only http:// proxies are supported: http:// requests are forwarded, https:// ones go through
a CONNECT tunnel (TLS end to end). What the address policy checks on the way is told in
`descend.crawl.address` (`GuardedTransport`, `check_target`): the proxy hop is trusted, each
target is resolved here and must be public (or trusted). Two consequences: the proxy resolves
the name again, so DNS rebinding could still reach a private address on its side; and a name
this machine cannot resolve fails as ``connection-error`` unless every origin is trusted
(``--allow-private-addresses``), where only the proxy's resolver knows the names.
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass, field

import httpx

from descend.crawl.address import AddressPolicy, GuardedTransport, origin
from descend.errors import ConfigError

SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Proxy:
    """One proxy URL and the variable that named it."""

    url: httpx.URL
    variable: str  # "HTTPS_PROXY", "all_proxy", ...

    @property
    def shown(self) -> str:
        """The URL without its credentials, for logs and reports."""
        return str(self.url.copy_with(username=None, password=None)).rstrip("/")


@dataclass(frozen=True)
class EnvironmentProxies:
    """Which proxy, if any, each URL scheme goes through, and the hosts that go direct."""

    by_scheme: dict[str, Proxy] = field(default_factory=dict)  # "http" / "https" -> proxy
    no_proxy: str = ""  # the NO_PROXY value, as written
    no_proxy_variable: str = "NO_PROXY"

    @classmethod
    def from_environment(cls) -> EnvironmentProxies:
        """The proxies the environment names now; `ConfigError` for one the crawl cannot use."""
        found = urllib.request.getproxies_environment()
        if found.get("no", "").strip() == "*":  # every host direct: no proxy is used
            return cls()
        by_scheme = {}
        for scheme in SCHEMES:
            key = scheme if found.get(scheme) else "all"
            if found.get(key):
                by_scheme[scheme] = _parse(found[key], _variable(key, found[key]))
        no_proxy = found.get("no", "")
        return cls(by_scheme, no_proxy, _variable("no", no_proxy) if no_proxy else "NO_PROXY")

    def for_url(self, url: httpx.URL) -> Proxy | None:
        """The proxy a request for ``url`` goes through; None: direct."""
        proxy = self.by_scheme.get(url.scheme)
        if proxy is None:
            return None
        host, port = origin(url)
        # In urllib.request since Python 2, and undeclared in typeshed.
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if bypass(f"{host}:{port}", {"no": self.no_proxy}):
            return None
        return proxy

    def describe(self) -> str | None:
        """One line for the crawl's report, or None when nothing goes through a proxy."""
        if not self.by_scheme:
            return None
        urls = {proxy.url for proxy in self.by_scheme.values()}
        if len(urls) == 1 and len(self.by_scheme) == len(SCHEMES):  # one proxy for everything
            variables = dict.fromkeys(p.variable for p in self.by_scheme.values())
            line = (f"via proxy {self.by_scheme['http'].shown} "
                    f"(from {', '.join(variables)})")
        else:
            line = ", ".join(
                f"{s}:// via proxy {p.shown} (from {p.variable})" if (p := self.by_scheme.get(s))
                else f"{s}:// direct" for s in SCHEMES)
        if self.no_proxy:
            line += f"; direct to {self.no_proxy_variable}={self.no_proxy}"
        return line


def crawl_transport(policy: AddressPolicy, limits: httpx.Limits,
                    proxies: EnvironmentProxies) -> httpx.AsyncBaseTransport:
    """The crawl's transport: a `GuardedTransport`, routed through ``proxies`` if any."""
    direct = GuardedTransport(policy, limits)
    if not proxies.by_scheme:
        return direct
    return ProxyRouter(direct, {
        proxy.url: GuardedTransport(policy, limits, httpx.Proxy(proxy.url))
        for proxy in proxies.by_scheme.values()
    }, proxies)


class ProxyRouter(httpx.AsyncBaseTransport):
    """Sends each request through its scheme's proxy, or direct for ``NO_PROXY`` hosts."""

    def __init__(self, direct: GuardedTransport, proxied: dict[httpx.URL, GuardedTransport],
                 proxies: EnvironmentProxies) -> None:
        self.direct = direct
        self.proxied = proxied
        self.proxies = proxies

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        proxy = self.proxies.for_url(request.url)
        transport = self.direct if proxy is None else self.proxied[proxy.url]
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        for transport in [self.direct, *self.proxied.values()]:
            await transport.aclose()


def _parse(value: str, variable: str) -> Proxy:
    shown = _without_credentials(value)
    try:
        url = httpx.URL(value if "://" in value else f"http://{value}")
    except httpx.InvalidURL:
        url = None
    if url is None or not url.host:
        raise ConfigError(f"{variable}={shown} is not a proxy URL; write it as "
                          "http://host:port") from None
    if url.scheme != "http":
        raise ConfigError(
            f"{variable}={shown} is a {url.scheme}:// proxy; descend crawl supports http:// "
            f"proxies only (https:// sites go through them with CONNECT): set {variable} to "
            "an http:// proxy, or unset it for the crawl")
    return Proxy(url, variable)


def _variable(key: str, value: str) -> str:
    """The name of the variable that gave ``value`` for ``key``: lower case wins, as in urllib."""
    names = [name for name, v in os.environ.items()
             if name.lower() == f"{key}_proxy" and v == value]
    return f"{key}_proxy" if f"{key}_proxy" in names else next(iter(names), f"{key.upper()}_PROXY")


def _without_credentials(value: str) -> str:
    """``value`` with any ``user:password@`` taken out: proxy passwords stay off screens."""
    scheme, sep, rest = value.rpartition("://")
    authority, slash, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    return f"{scheme}{sep}{host}{slash}{path}"
