"""A per-site daily cloud budget, shared by the site's edge workers.

Every escalation costs money: one cloud inference per region plus the bytes sent
(``pipeline.planning.costs.CostModel``). A site may cap what it spends per UTC day. Once the cap
is used up, the escalation policy answers from the edge with reason ``budget`` until
the next day.

The workers of a site share one ledger in a JetStream KV bucket on the site's own
server (``HF_BUDGET``, key ``<site>.<YYYY-MM-DD>``, value: dollars reserved so far, as
a decimal string). A worker does not write per escalation: it reserves a block (a
share of the daily limit) with a compare-and-set update and spends it locally, so the
ledger costs one KV round trip per block. What a worker has reserved but not spent
when it stops is lost to that day; the cap can be undershot by at most one block per
worker, never overshot.

``Allowance`` is the pure, clock-injected part; ``BudgetLedger`` the KV part.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from pipeline.planning.costs import BYTES_PER_GB, CostModel
from schemas import subjects
from schemas.errors import ConfigError
from schemas.subjects import check_token

__all__ = [
    "BUDGET_BUCKET",
    "Allowance",
    "BudgetLedger",
    "SiteBudget",
    "escalation_cost",
    "utc_day",
]

log = logging.getLogger(__name__)

BUDGET_BUCKET = subjects.BUDGET_BUCKET
# Share of the daily limit a worker reserves at a time.
_BLOCK_SHARE = 0.02
_CAS_ATTEMPTS = 20


def utc_day(now: float) -> str:
    """The UTC calendar day of Unix time ``now``: ``YYYY-MM-DD``."""
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d")


def escalation_cost(prices: CostModel, regions: int, sent_bytes: int) -> float:
    """Dollars one escalation costs: a cloud inference per region plus its bytes."""
    return regions * prices.cloud_per_image + sent_bytes / BYTES_PER_GB * prices.egress_per_gb


@dataclass(slots=True)
class Allowance:
    """What this worker may still spend today from the blocks it has reserved.

    ``limit`` is the site's daily cap in dollars (0: no cap). Pure: the caller passes
    the time, and asks ``BudgetLedger`` for a block when ``needs_block`` says so.
    """

    limit: float
    day: str = ""
    left: float = 0.0  # reserved and not yet spent, for ``day``
    exhausted: bool = False  # the site's ledger has nothing left for ``day``

    def __post_init__(self) -> None:
        if not (isinstance(self.limit, int | float) and math.isfinite(self.limit)) or (
            self.limit < 0
        ):
            raise ConfigError(f"daily cloud budget must be a number >= 0, got {self.limit!r}")

    @property
    def capped(self) -> bool:
        """False when there is no cap (limit 0)."""
        return self.limit > 0

    @property
    def block(self) -> float:
        """How much to reserve at a time."""
        return self.limit * _BLOCK_SHARE

    def roll(self, now: float) -> None:
        """Start a new day's accounting when the UTC day changed."""
        today = utc_day(now)
        if today != self.day:
            self.day, self.left, self.exhausted = today, 0.0, False

    def allows(self, now: float) -> bool:
        """True unless today's site budget is used up (always True without a cap)."""
        if not self.capped:
            return True
        self.roll(now)
        return not self.exhausted

    def needs_block(self, cost: float) -> bool:
        """True when ``cost`` exceeds what is reserved and the ledger may have more."""
        return self.capped and not self.exhausted and cost > self.left

    def spend(self, cost: float) -> bool:
        """Take ``cost`` from the reserved allowance; False (nothing taken) if short."""
        if not self.capped:
            return True
        if cost > self.left:
            return False
        self.left -= cost
        return True

    def granted(self, amount: float) -> None:
        """Add a reservation from the ledger; 0 means the site has nothing left today."""
        if amount <= 0:
            self.exhausted = True
        self.left += max(0.0, amount)


class BudgetLedger:
    """The site's shared record of money reserved per day, in a KV bucket."""

    def __init__(self, js: JetStreamContext, site: str) -> None:
        self._js = js
        self._site = check_token(site, "site")
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self._js.key_value(BUDGET_BUCKET)
            except NotFoundError:
                # Three days of history is plenty for an operator to look back.
                self._kv = await self._js.create_key_value(
                    bucket=BUDGET_BUCKET, history=1, ttl=3 * 86_400
                )
        return self._kv

    async def reserve(self, day: str, amount: float, limit: float) -> float:
        """Reserve up to ``amount`` of ``day``'s ``limit``; returns what was granted.

        Compare-and-set on the day's key, so concurrent workers never grant more than
        ``limit`` in total.
        """
        kv = await self._bucket()
        key = f"{self._site}.{day}"
        for _ in range(_CAS_ATTEMPTS):
            try:
                entry = await kv.get(key)
                reserved = float((entry.value or b"0").decode())
                revision = entry.revision
            except KeyNotFoundError:
                reserved, revision = 0.0, None
            grant = min(amount, limit - reserved)
            if grant <= 0:
                return 0.0
            value = repr(reserved + grant).encode()
            try:
                if revision is None:
                    await kv.create(key, value)
                else:
                    await kv.update(key, value, last=revision)
            except KeyWrongLastSequenceError:
                continue  # another worker reserved in between: read again
            return grant
        log.warning("budget ledger %s: too much contention, reserving nothing this time", key)
        return 0.0


@dataclass(eq=False)
class SiteBudget:
    """What this worker may spend of the site's budget: ask ``affords``, then ``spend``.

    ``affords`` may reserve a block from the ledger (one KV round trip per block) and
    never spends; the decision takes its answer, and ``spend`` then cannot fail, so no
    decision is overridden afterwards.
    """

    allowance: Allowance
    prices: CostModel
    on_exhausted: Callable[[Allowance], Awaitable[None]]
    _ledger: BudgetLedger | None = field(default=None, init=False)

    def bind(self, ledger: BudgetLedger) -> None:
        self._ledger = ledger

    def cost(self, regions: int, sent_bytes: int) -> float:
        return escalation_cost(self.prices, regions, sent_bytes)

    async def affords(self, cost: float, now: float) -> bool:
        """True when ``cost`` is reserved (or there is no cap)."""
        allowance = self.allowance
        if not allowance.allows(now):
            return False
        if allowance.needs_block(cost):
            assert self._ledger is not None, "bind() first"
            try:
                grant = await self._ledger.reserve(
                    allowance.day, max(allowance.block, cost), allowance.limit
                )
            except Exception as exc:  # the site's own server: rare, and only this block
                log.warning("could not reserve cloud budget: %s", exc)
                return False
            was_exhausted = allowance.exhausted
            allowance.granted(grant)
            if allowance.exhausted and not was_exhausted:
                await self.on_exhausted(allowance)
        return not allowance.capped or cost <= allowance.left

    def spend(self, cost: float) -> None:
        """Pay ``cost``, which ``affords`` said is reserved."""
        if not self.allowance.spend(cost):
            raise RuntimeError(f"spent ${cost:.6g} that was not reserved")
