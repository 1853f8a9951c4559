"""Shared limits of one crawl: requests per second per host, and bytes downloaded in all."""

from __future__ import annotations

import asyncio
import time


class HostRateLimiter:
    """At most ``rate`` request starts per second to any one host (``None``: no limit).

    Each request reserves the next free slot of its host, then sleeps until it; reserving
    before sleeping keeps the spacing exact however many tasks wait at once.
    """

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next: dict[str, float] = {}

    async def wait(self, host: str) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        start = max(now, self._next.get(host, now))
        self._next[host] = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


class ByteBudget:
    """The total-bytes cap, charged chunk by chunk while downloads stream."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0
        self.exhausted = False

    def take(self, n: int) -> bool:
        """Charge ``n`` bytes; False (and exhausted from now on) if that would pass the cap."""
        if self.limit is not None and self.used + n > self.limit:
            self.exhausted = True
            return False
        self.used += n
        return True
