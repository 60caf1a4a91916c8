"""The relays a send goes through: which one carries the next copy, on which of its connections.

    acquire() -> pick a relay by weight among those not resting (smooth weighted round robin)
              -> wait for one of its connections (at most its pool_size) -> the copy goes
              -> answered() or refused() -> release()

Each relay has its own connections (``pool_size``), its own rate limit (``rate``, a TokenBucket
the dispatcher takes before each message) and its own rest:

- A relay that refuses a connection (or cannot be reached) rests ``retry_base`` seconds, then
  twice that, four times ... up to ``retry_cap`` ([delivery]); its copies go to the other relays
  meanwhile. When a rest ends, one connection probes the relay; if it answers, the relay is back
  in the rotation with its whole pool, else it rests again, twice as long.
- A relay that answers 421 at connect while other connections to it carry copies is at its
  per-client connection limit, not down: that one connection slot rests ``retry_base`` (capped).
- When every relay rests, ``acquire`` says so and how long until the first may be tried again;
  the dispatcher waits for it (until the issue's deadline), as it always has for its one relay.

Nothing here reads or writes the ledger, and no reader's attempts are counted here.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..models import DeliverySettings, SmtpSettings
from .ratelimit import TokenBucket
from .transport import RelayUnreachable, SmtpConnection, check_smtp_settings

ConnectionFactory = Callable[[], SmtpConnection]


def connection_factory(smtp: SmtpSettings) -> ConnectionFactory:
    """Connections to one relay, verifying certificates (plus its ``ca_file`` if set)."""
    check_smtp_settings(smtp)
    context = None
    if smtp.tls != "none":
        context = ssl.create_default_context(cafile=str(smtp.ca_file) if smtp.ca_file else None)
    return lambda: SmtpConnection(smtp, context)


async def first_answering(factories: Sequence[Callable[[], SmtpConnection]]) -> SmtpConnection:
    """An open connection to the first relay that takes one (a test copy, a preview); the last
    relay's, unopened, if none does: its first message then reports the refusal as ever."""
    for factory in factories[:-1]:
        connection = factory()
        try:
            await connection.open()
        except RelayUnreachable:
            continue
        return connection
    return factories[-1]()


@dataclass(eq=False)
class Relay:
    """One relay's connections, rate limit, share of the copies and rest."""

    settings: SmtpSettings
    connect: ConnectionFactory
    bucket: TokenBucket
    idle: list[SmtpConnection] = field(default_factory=list)  # open, or closed and ready to reopen
    out: int = 0  # connections leased now
    benched: list[float] = field(default_factory=list)  # when each slot rested after a 421 comes back
    refusals: int = 0  # in a row, since it last answered: how long its rests are
    resting_until: float = 0.0  # monotonic seconds
    probing: bool = False  # a rest has ended and one connection is finding out whether it answers
    credit: float = 0.0  # smooth weighted round robin
    problem: str = ""  # why it last refused

    @property
    def name(self) -> str:
        return self.settings.relay_name

    @property
    def where(self) -> str:
        return self.settings.where

    def resting(self, now: float) -> bool:
        return now < self.resting_until

    def open(self, now: float) -> bool:
        """Whether a copy may be given to this relay now (once its connections allow)."""
        return not self.resting(now) and not (self.refusals and self.probing)

    def free(self, now: float) -> bool:
        """Whether one of its connection slots is free now (only the probe's, after a rest)."""
        if self.refusals:
            return not self.probing
        if self.benched:
            self.benched = [until for until in self.benched if until > now]
        return self.out + len(self.benched) < self.settings.pool_size


@dataclass(frozen=True, slots=True, eq=False)
class Lease:
    """One connection of one relay, lent to one copy until ``RelayPool.release``."""

    relay: Relay
    connection: SmtpConnection
    probe: bool  # the first connection after the relay's rest: its answer says whether it is back


@dataclass(frozen=True, slots=True)
class AllResting:
    """Every relay rests: the first may be tried in ``seconds``; ``reason`` says why each refused."""

    seconds: float
    reason: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """What the pool made of a connection a relay refused."""

    relay: Relay
    seconds: float  # how long the relay (or, at its connection limit, the one slot) rests
    limit: bool  # the relay is up but at its connection limit; ``others`` of its connections carry on
    others: int = 0
    new: bool = True  # False: the relay was already resting (another connection found out first)


class RelayPool:
    """The configured relays, for one send: ``acquire`` a connection, ``release`` it after the copy."""

    def __init__(self, relays: Sequence[SmtpSettings], delivery: DeliverySettings, *,
                 factory: Callable[[SmtpSettings], ConnectionFactory] = connection_factory) -> None:
        """``factory`` makes each relay's connections (checking its settings first)."""
        if not relays:
            raise ValueError("a relay pool needs at least one relay")
        self.relays = [Relay(smtp, factory(smtp), TokenBucket(smtp.rate)) for smtp in relays]
        self.delivery = delivery
        self._changed = asyncio.Event()
        self._waiting = 0

    @property
    def size(self) -> int:
        """Every relay's connections together: as many copies as can be in flight at once."""
        return sum(relay.settings.pool_size for relay in self.relays)

    @property
    def single(self) -> bool:
        return len(self.relays) == 1

    def rest(self, refusals: int) -> float:
        """How long a relay rests after ``refusals`` refused connections in a row."""
        # The exponent is capped: a relay down for hours refuses thousands of times, and 2.0 ** 1024 overflows.
        return min(self.delivery.retry_cap, self.delivery.retry_base * 2.0 ** min(max(0, refusals - 1), 60))

    async def acquire(self, stop: asyncio.Event) -> Lease | AllResting | None:
        """A connection of the relay whose turn it is, once one is free; ``AllResting`` when every
        relay rests; None when ``stop`` is set while waiting.

        The relay is chosen first and the copy waits for that relay's connection, so weights
        decide the shares even when one relay is slower than another.
        """
        chosen: Relay | None = None
        while True:
            now = time.monotonic()
            if chosen is None or not chosen.open(now):
                candidates = [relay for relay in self.relays if relay.open(now)]
                if not candidates:
                    if not any(relay.probing for relay in self.relays):
                        return AllResting(max(0.0, min(r.resting_until for r in self.relays) - now), self.trouble())
                    chosen = None  # a probe is out: its answer decides where this copy goes
                else:
                    chosen = self._pick(candidates)
            if chosen is not None and chosen.free(now):
                return self._lease(chosen)
            if not await self._wait_for_change(stop, self._next_change(now)):
                return None

    def _pick(self, candidates: list[Relay]) -> Relay:
        """Smooth weighted round robin (nginx's): over any run of picks each relay gets its weight's
        share, evenly interleaved (weights 3 and 1: A A B A, A A B A ...)."""
        total = 0.0
        for relay in candidates:
            relay.credit += relay.settings.weight
            total += relay.settings.weight
        chosen = max(candidates, key=lambda relay: relay.credit)
        chosen.credit -= total
        return chosen

    def _lease(self, relay: Relay) -> Lease:
        probe = relay.refusals > 0
        relay.probing = relay.probing or probe
        relay.out += 1
        if relay.idle:
            # An open connection first: a closed one would reconnect, and a relay at its
            # connection limit refuses that. The last one back is usually open.
            connection = relay.idle[-1]
            if not connection.connected:
                connection = next((c for c in reversed(relay.idle) if c.connected), connection)
            relay.idle.remove(connection)
        else:
            connection = relay.connect()
        return Lease(relay, connection, probe)

    def _next_change(self, now: float) -> float | None:
        """Seconds until a rest or a rested slot ends (None: only a release changes anything)."""
        ends = [r.resting_until for r in self.relays if r.resting(now)]
        ends += [until for r in self.relays for until in r.benched if until > now]
        return max(0.0, min(ends) - now) if ends else None

    async def _wait_for_change(self, stop: asyncio.Event, timeout: float | None) -> bool:
        """Until a connection is released or a relay's state changes, or ``timeout``; False if stopped."""
        if stop.is_set():
            return False
        changed = asyncio.ensure_future(self._changed.wait())
        stopped = asyncio.ensure_future(stop.wait())
        self._waiting += 1
        try:
            await asyncio.wait((changed, stopped), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiting -= 1
            changed.cancel()
            stopped.cancel()
        return not stop.is_set()

    def _notify(self) -> None:
        if self._waiting:
            self._changed.set()
            self._changed = asyncio.Event()

    def release(self, lease: Lease, *, drop: bool = False) -> None:
        """Give the connection back (``drop``: closed first, without a word to the server)."""
        relay = lease.relay
        relay.out -= 1
        if lease.probe and relay.probing:
            relay.probing = False  # the probe ended without an answer either way (a setting, a stop)
        if drop:
            lease.connection.drop()
        relay.idle.append(lease.connection)
        self._notify()

    def answered(self, lease: Lease) -> bool:
        """The relay took the copy's transaction (whatever it said of the reader); True if it had been
        resting, i.e. it is back."""
        relay = lease.relay
        if not relay.refusals:
            return False
        relay.refusals = 0
        relay.probing = False
        relay.problem = ""
        self._notify()
        return True

    def refused(self, lease: Lease, exc: ConnectionError) -> Refusal:
        """The relay would not take a connection: rest it (or, at its connection limit, this slot)."""
        relay = lease.relay
        now = time.monotonic()
        others = relay.out - 1
        try:
            if isinstance(exc, RelayUnreachable) and exc.answered and others > 0 and not relay.refusals:
                seconds = self.rest(1)
                relay.benched.append(now + seconds)
                return Refusal(relay, seconds, limit=True, others=others)
            if relay.resting(now) or (relay.refusals and not lease.probe):
                # Connections that went out before the relay started resting fail too: one rest, not one each.
                return Refusal(relay, max(0.0, relay.resting_until - now), limit=False, new=False)
            relay.refusals += 1
            seconds = self.rest(relay.refusals)
            relay.resting_until = now + seconds
            relay.problem = str(exc) if isinstance(exc, RelayUnreachable) else f"{relay.where}: {exc}"
            if lease.probe:
                relay.probing = False
            return Refusal(relay, seconds, limit=False)
        finally:
            self._notify()

    def carrying(self) -> list[Relay]:
        """The relays taking copies now (not resting)."""
        now = time.monotonic()
        return [relay for relay in self.relays if not relay.resting(now)]

    def trouble(self) -> str:
        """Why the resting relays refused, one after the other ("mx-a (h:25) refused the connection; ...")."""
        return "; ".join(relay.problem for relay in self.relays if relay.problem)

    async def close(self, *, polite: bool = True) -> None:
        """Close every idle connection: with QUIT when ``polite`` (all at once), else by dropping it."""
        idle = [connection for relay in self.relays for connection in relay.idle]
        for relay in self.relays:
            relay.idle = []
        if polite:
            await asyncio.gather(*(connection.close() for connection in idle))
        else:
            for connection in idle:
                connection.drop()

    def drop(self) -> None:
        """Close every idle connection without a word to the server (a send being cancelled)."""
        for relay in self.relays:
            for connection in relay.idle:
                connection.drop()
