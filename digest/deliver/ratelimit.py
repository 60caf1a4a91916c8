"""A token bucket: at most ``rate`` messages a second to one relay, shared by all its connections."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """``await bucket.take()`` before each message. A rate of 0 means no limit."""

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        self.rate = rate
        self.capacity = burst  # 1: never more than the rate, even in the first second
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        if self.rate <= 0:
            return
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)
