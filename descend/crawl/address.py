"""Which addresses the crawler may connect to: public ones, unless the user opts in.

A search answer or a redirect can name any host: ``http://127.0.0.1:6379/``, a router at
``192.168.1.1`` or the cloud metadata service at ``169.254.169.254``; whatever image sits there
would land in the dataset. So every connection is checked where it is made: the host name is
resolved here, each address is checked, and the socket is opened to the very address that
passed. Redirects and DNS rebinding (a name that resolves to a public address for a check and
to a private one for the connection) get no second chance to resolve differently.

Two opt-ins: the ``--base-url`` of a source (its host and port, exactly as written: tests and
intranet mirrors live on local addresses) and ``--allow-private-addresses`` (everything).

Through a proxy (`descend.crawl.proxy`) the crawler cannot choose the address the proxy
connects to, so the policy is applied to both hops: the connection to the proxy is made by the
same backend, trusting the proxy's own host and port (the user named it) and nothing else, and
each request's target is resolved and checked here before the request is sent (`check_target`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore
import httpx

from descend.errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS = {"http": 80, "https": 443}
# IPv6 prefixes that carry an IPv4 address a gateway connects on to: judged by that address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(Exception):
    """A connection refused by the address policy; ``address`` is the first address refused."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host} resolves to {address}, which is not a public address")
        self.host = host
        self.address = address


def is_public(address: str | IPAddress) -> bool:
    """True for a globally routable unicast address.

    ``is_global`` alone lets multicast through (224.0.0.0/4 and ff00::/8 count as global),
    and an IPv6 address may wrap an IPv4 one (``::ffff:127.0.0.1``, 6to4, NAT64) that is
    what the connection really reaches; each such wrapped address is judged itself.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        wrapped = ip.ipv4_mapped or ip.sixtofour
        if wrapped is None and ip in _NAT64:
            wrapped = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if wrapped is not None:
            return is_public(wrapped)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback
                                 or ip.is_link_local or ip.is_unspecified or ip.is_private)


def origin(url: str | httpx.URL) -> tuple[str, int]:
    """(host, port) of ``url`` as the connection pool names it: ASCII host, explicit port."""
    parsed = httpx.URL(url) if isinstance(url, str) else url
    return parsed.raw_host.decode("ascii").lower(), parsed.port or DEFAULT_PORTS[parsed.scheme]


@dataclass(frozen=True, kw_only=True)
class AddressPolicy:
    """Public addresses always; private ones for ``trusted`` origins, or for all if asked."""

    allow_private: bool = False
    trusted: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def for_crawl(cls, base_urls: Iterable[str | None], *, allow_private: bool) -> AddressPolicy:
        trusted = set()
        for url in filter(None, base_urls):
            try:
                trusted.add(origin(url))
            except (httpx.InvalidURL, KeyError, UnicodeError):
                raise ConfigError(f"--base-url {url!r} must look like http://host[:port]") from None
        return cls(allow_private=allow_private, trusted=frozenset(trusted))

    def trusts(self, host: str, port: int) -> bool:
        return self.allow_private or (host.lower(), port) in self.trusted


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the policy applied between resolving and connecting."""

    def __init__(self, policy: AddressPolicy,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        async def connect(to: str) -> httpcore.AsyncNetworkStream:
            return await self.inner.connect_tcp(to, port, timeout=timeout,
                                                local_address=local_address,
                                                socket_options=socket_options)

        if self.policy.trusts(host, port):
            return await connect(host)
        allowed: list[str] = []
        refused: list[str] = []
        for address in await _resolve(host, port):
            (allowed if is_public(address) else refused).append(address)
        if not allowed:
            raise BlockedAddress(host, refused[0] if refused else host)
        error: Exception | None = None
        for address in allowed:  # in resolver order, as a plain connect would try them
            try:
                return await connect(address)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                error = e
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("the crawler does not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


async def check_target(policy: AddressPolicy, host: str, port: int) -> None:
    """Refuse ``host`` as the target of a proxied request unless its origin is trusted or every
    address it resolves to is public (`BlockedAddress`; `httpcore.ConnectError` if it does not
    resolve).

    Every address, not the first public one as a direct connection takes: the proxy picks.
    It also resolves the name again, so a name that answers differently the second time (DNS
    rebinding) could still reach a private address on the proxy's side; a direct connection
    has no such gap.
    """
    if policy.trusts(host, port):
        return
    for address in await _resolve(host, port):
        if not is_public(address):
            raise BlockedAddress(host, address)


async def _resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an address literal resolves to itself), in order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise httpcore.ConnectError(f"cannot resolve {host}: {e}") from None
    # The scope of a link-local IPv6 address ("fe80::1%eth0") is dropped: it is refused anyway.
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


class GuardedTransport(httpx.AsyncHTTPTransport):
    """`httpx.AsyncHTTPTransport` whose connections go through a `GuardedBackend`.

    httpx 0.28 takes no network backend, so the pool it builds is replaced by the same pool
    with ours (encode/httpx discussion #3180, pull request #3749).

    With ``proxy`` (an http:// proxy) the pool is httpcore's `AsyncHTTPProxy`, built on the
    same backend: it connects only to the proxy, whose host and port alone it trusts. The
    proxy, not this machine, then connects to each request's target, so the target is checked
    here before the request goes out (`check_target`, under the crawl's ``policy``).
    """

    def __init__(self, policy: AddressPolicy, limits: httpx.Limits,
                 proxy: httpx.Proxy | None = None) -> None:
        super().__init__(limits=limits)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("this httpx version builds its transport differently; "
                               "descend's address check needs updating")
        self.policy = policy
        self.proxy = proxy
        ssl_context = httpx.create_ssl_context()
        if proxy is None:
            self._pool = httpcore.AsyncConnectionPool(
                ssl_context=ssl_context,
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=GuardedBackend(policy),
            )
            return
        if proxy.url.scheme != "http":
            raise ValueError(f"only http:// proxies are supported, not {proxy.url.scheme}://")
        self._pool = httpcore.AsyncHTTPProxy(
            proxy_url=httpcore.URL(scheme=proxy.url.raw_scheme, host=proxy.url.raw_host,
                                   port=proxy.url.port, target=proxy.url.raw_path),
            proxy_auth=proxy.raw_auth,
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(AddressPolicy(trusted=frozenset({origin(proxy.url)}))),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.proxy is not None:
            try:
                await check_target(self.policy, *origin(request.url))
            except httpcore.ConnectError as e:  # httpx maps httpcore's errors only inside
                raise httpx.ConnectError(str(e), request=request) from None
        return await super().handle_async_request(request)
