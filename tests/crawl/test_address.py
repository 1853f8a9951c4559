"""Search results and redirects that point at this machine or its network are not followed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from descend.crawl import ClassSpec, CrawlConfig, crawl
from descend.crawl.address import AddressPolicy, is_public, origin
from descend.crawl.manifest import MANIFEST_NAME, UrlRecord, history_of, read_records
from tests.support.fakeweb import FakeWeb, Route, can_serve_on, pictures

FAST = dict(timeout=2.0, retries=0, backoff=0.01, progress=False)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("::ffff:8.8.8.8", True),  # IPv4-mapped: judged by the IPv4 address it reaches
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("::1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # the cloud metadata service
        ("fe80::1", False),
        ("fc00::1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("::", False),
        ("224.0.0.1", False),  # multicast counts as "global" in ipaddress; not here
        ("239.255.255.250", False),
        ("ff02::1", False),
        ("240.0.0.1", False),  # reserved
        ("255.255.255.255", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("2002:7f00:1::", False),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 wrapping 169.254.169.254
    ],
)
def test_only_public_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(address) is public


def test_the_opt_in_is_the_base_url_host_and_port_exactly() -> None:
    policy = AddressPolicy.for_crawl(["http://LocalHost:8080/prefix", None], allow_private=False)
    assert origin("https://example.com/x") == ("example.com", 443)
    assert policy.trusts("localhost", 8080)
    assert not policy.trusts("localhost", 8081)
    assert not policy.trusts("127.0.0.1", 8080)
    assert AddressPolicy.for_crawl([], allow_private=True).trusts("10.0.0.1", 22)


def _last(out: Path) -> dict[str, UrlRecord]:
    """URL -> its last manifest record (one class here)."""
    return {url: r for (_, url), r in history_of(read_records(out / MANIFEST_NAME)).last.items()}


@contextlib.contextmanager
def _ipv6_web() -> Iterator[FakeWeb | None]:
    if not can_serve_on("::1"):
        yield None
        return
    with FakeWeb(host="::1") as web:
        yield web


def test_private_addresses_in_results_and_redirects_are_refused(web: FakeWeb,
                                                                tmp_path: Path) -> None:
    imgs = pictures(8)
    with FakeWeb(host="127.0.0.2") as other_ip, FakeWeb() as other_port, _ipv6_web() as v6:
        good = web.add("/good.jpg", imgs[0])
        web.add("/by-name.jpg", imgs[1])
        refused = {
            "another address": other_ip.add("/a.jpg", imgs[2]),
            "another port": other_port.add("/b.jpg", imgs[3]),
            # The base URL's own server under another name: the name resolves to 127.0.0.1,
            # and it is that address, found after resolving, that is refused.
            "a name for loopback": f"http://localhost:{web.port}/by-name.jpg",
            "redirect to 127.0.0.2": web.add("/r1", Route(status=302, headers={
                "Location": other_ip.add("/c.jpg", imgs[4])})),
            "redirect to metadata": web.add("/r2", Route(status=302, headers={
                "Location": "http://169.254.169.254/latest/meta-data/iam/"})),
            "IPv4-mapped IPv6": f"http://[::ffff:127.0.0.1]:{web.port}/good.jpg",
        }
        if v6 is not None:
            refused["redirect to [::1]"] = web.add("/r3", Route(status=307, headers={
                "Location": v6.add("/d.jpg", imgs[5])}))
        web.baidu["猫"] = [good, *refused.values()]
        out = tmp_path / "out"
        config = dict(classes=[ClassSpec("cat", ("猫",))], out=out, base_url=web.url,
                      per_class=10, **FAST)
        report = crawl(CrawlConfig(**config))

        last = _last(out)
        assert last[good].status == "kept"
        for what, url in refused.items():
            assert last[url].status == "rejected", what
            assert last[url].reason.startswith("blocked-address:"), what
            assert last[url].permanent is True, what
        assert last[refused["redirect to metadata"]].reason == "blocked-address:169.254.169.254"
        assert last[refused["redirect to 127.0.0.2"]].reason == "blocked-address:127.0.0.2"
        # Not one request reached the other servers, nor the base URL's server by another name.
        assert other_ip.requests == [] and other_port.requests == []
        assert v6 is None or v6.requests == []
        assert web.requested("/by-name.jpg") == 0
        files = list((out / "train").rglob("*.jpg")) + list((out / "val").rglob("*.jpg"))
        assert len(files) == 1
        assert report.classes[0].rejected["blocked-address"] == len(refused)
        assert "--allow-private-addresses" in report.format()

        # Opting in: the refusals stood only while the policy did, so the same crawl now
        # fetches them, proving they were there to be had. (Not the metadata address: on a
        # cloud machine something answers there.)
        del refused["redirect to metadata"], refused["IPv4-mapped IPv6"]
        web.baidu["猫"] = [good, *refused.values()]
        report = crawl(CrawlConfig(**{**config, "allow_private_addresses": True}))
        last = _last(out)
        assert {what for what, url in refused.items() if last[url].status == "kept"} == set(
            refused)
        assert report.classes[0].kept == 1 + len(refused)
