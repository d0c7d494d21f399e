"""The rollout controller: canaries in the desired state, judged from heartbeats.

``RolloutController.start`` writes a rollout; ``run`` carries it out. They may run in
different processes (``hybridfleet rollout start`` and ``hybridfleet rollout run``):
everything they share is in JetStream KV (contracts.md):

* ``HF_ROLLOUT``, key ``<tier>.<site>``: the ``RolloutState`` as JSON (plan, step,
  canary workers, history). Written with the revision it was read at, so two
  controllers cannot both move one rollout.
* ``HF_DESIRED``: ``model.<tier>.<site>`` is the site's version;
  ``model.<tier>.<site>.<worker>`` a per-worker override. Canaries get an override;
  a roll back deletes the overrides (the workers go back to the site's version);
  completion sets the site key to the new version, then deletes the overrides.
* ``HF_FLEET``, key ``worker.<site>.<worker>``: each worker's latest heartbeat. Read
  by ``start`` to find the live workers and the baseline's counters; never written.
  (The reads and writes are in pipeline/release/rolloutstore.py.)

``run`` listens to ``fleet.heartbeat.>``, tallies each running rollout's two arms
(``ArmTally``), asks ``CanaryJudge`` every ``tick_s`` and applies the verdict
(``RolloutState.apply``). A canary that has not reported the new version
``switch_timeout_s`` after its step began is rolled back. What happens is published
on ``fleet.events``.

Order on a transition: the new state is stored first (which claims it), then the
desired state changes, then the events. A controller that dies in between leaves the
state ahead of the overrides; the next one re-asserts a running step's overrides when
it loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import nats.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from pipeline.release.judge import CanaryConfig, CanaryJudge, Decision, Verdict
from pipeline.release.plan import TIERS, RolloutPhase, RolloutPlan, RolloutState
from pipeline.release.rolloutstore import RolloutStore, read_entry
from pipeline.release.tallies import ArmTally
from schemas import subjects
from schemas.checks import require_number
from schemas.errors import ConfigError, HybridfleetError, SchemaError
from schemas.subjects import check_token

__all__ = [
    "EVENTS_SUBJECT",
    "RolloutConfig",
    "RolloutController",
    "heartbeat_subject",
]

log = logging.getLogger(__name__)

EVENTS_SUBJECT: Final = subjects.FLEET_EVENTS
EVENT_SCHEMA: Final = 1

heartbeat_subject = subjects.heartbeats


@dataclass(frozen=True, slots=True)
class RolloutConfig:
    """How the controller runs rollouts; ``canary`` is the judge's configuration."""

    canary: CanaryConfig = field(default_factory=CanaryConfig)
    later_steps: tuple[float, ...] = (0.5, 1.0)  # after the canary share; 1.0 completes
    tick_s: float = 1.0  # how often running rollouts are judged
    switch_timeout_s: float = 120.0  # a step's canaries must report the version by then
    worker_ttl_s: float = 20.0  # a worker silent this long gets no new override
    status_every_s: float = 10.0  # how often the judge's latest word is stored

    def __post_init__(self) -> None:
        if not isinstance(self.canary, CanaryConfig):
            raise ConfigError(f"canary must be a CanaryConfig, got {type(self.canary).__name__}")
        for name in ("tick_s", "switch_timeout_s", "worker_ttl_s", "status_every_s"):
            require_number(name, getattr(self, name), 0, open_=True)
        steps = self.later_steps
        if not all(isinstance(s, int | float) and 0 < s <= 1 for s in steps):
            raise ConfigError(f"later_steps must be shares in (0, 1], got {steps!r}")


@dataclass(slots=True)
class _Running:
    """What ``run`` knows of one rollout: its state and KV revision, and its tally."""

    state: RolloutState
    revision: int
    tally: ArmTally
    tally_step: int
    reason_saved_at: float = 0.0


class RolloutController:
    """Starts rollouts, and (in ``run``) judges and carries them out; see the module doc.

    ``nc`` and ``js`` must reach the server (and JetStream domain) that holds the KV
    buckets and carries the heartbeats. Buckets are created when missing, except
    ``HF_FLEET``, which the workers own.
    """

    def __init__(
        self, nc: Client, js: JetStreamContext, config: RolloutConfig | None = None
    ) -> None:
        """A controller; nothing is read or written until ``start``, ``status`` or ``run``."""
        self._nc = nc
        self._store = RolloutStore(js)
        self.config = config if config is not None else RolloutConfig()
        self.judge = CanaryJudge(self.config.canary)
        self._rollouts: dict[str, _Running] = {}
        self._last_beats: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._finished = asyncio.Event()
        self._running = False

    # ------------------------------------------------------------ public API

    async def start(self, tier: str, version: str, canary_share: float, site: str) -> RolloutState:
        """Begin rolling ``version`` out to ``tier`` workers at ``site``.

        Picks the canaries among the live workers of ``HF_FLEET``, stores the state,
        writes their overrides and publishes ``rollout_started`` and
        ``canary_assigned``. ``ConfigError`` for a bad argument or no live worker;
        ``HybridfleetError`` if a rollout is already running there.
        """
        if tier not in TIERS:
            raise ConfigError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
        try:
            check_token(site, "site")
        except SchemaError as exc:
            raise ConfigError(str(exc)) from None
        rollouts = await self._store.rollouts()
        await self._store.desired()  # both buckets exist once a rollout was started
        key = f"{tier}.{site}"
        existing = await read_entry(rollouts, key)
        if existing is not None:
            state = RolloutState.from_json(existing[0])
            if state.running:
                raise HybridfleetError(
                    f"a rollout of {tier}@{state.plan.version} is already running at {site}"
                )
        previous = await self._store.site_version(tier, site)
        now = time.time()
        seed = [b for b in await self._store.fleet(site) if b.get("tier") == tier]
        live = sorted(
            str(b["worker"])
            for b in seed
            if isinstance(b.get("at"), int | float) and now - b["at"] <= self.config.worker_ttl_s
        )
        plan = RolloutPlan.with_canary(
            tier,
            site,
            version,
            canary_share,
            later_steps=self.config.later_steps,
            previous_version=previous,
            started_at=now,
            baseline_seed=seed,
        )
        state = RolloutState.begin(plan, live, now)
        try:
            if existing is None:
                await rollouts.create(key, state.to_json())
            else:
                await rollouts.update(key, state.to_json(), last=existing[1])
        except KeyWrongLastSequenceError:
            raise HybridfleetError(f"another rollout was started at {site} meanwhile") from None
        await self._store.assign(plan, state.canary_workers)
        await self._event("rollout_started", state, steps=list(plan.steps))
        await self._event("canary_assigned", state, workers=list(state.canary_workers))
        await self._nc.flush()
        return state

    async def status(self, tier: str | None = None, site: str | None = None) -> list[RolloutState]:
        """The stored rollouts (running or ended), optionally of one tier and/or site."""
        rollouts = await self._store.rollouts()
        try:
            keys = await rollouts.keys()
        except NoKeysError:
            return []
        states = []
        for key in sorted(keys):
            found = await read_entry(rollouts, key)
            if found is None:
                continue
            state = RolloutState.from_json(found[0])
            if tier in (None, state.plan.tier) and site in (None, state.plan.site):
                states.append(state)
        return states

    async def run(self) -> None:
        """Judge and carry out running rollouts until ``stop``; then return.

        A NATS error while judging one rollout is logged and retried at the next tick.
        Once ``stop`` was called, ``run`` returns at once: a controller runs once.
        """
        if self._running:
            raise HybridfleetError("this RolloutController is already running")
        self._running = True
        self._finished.clear()
        try:
            rollouts = await self._store.rollouts()
            await self._store.desired()
            sub = await self._nc.subscribe(heartbeat_subject(), cb=self._on_heartbeat)
            try:
                watcher = await rollouts.watchall()
                try:
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._follow(watcher))
                        tasks.create_task(self._judge_loop())
                finally:
                    with contextlib.suppress(nats.errors.Error):
                        await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py
            finally:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
        finally:
            self._running = False
            self._ready.clear()
            self._finished.set()

    async def wait_started(self) -> None:
        """Return once ``run`` listens to heartbeats and has loaded the stored rollouts."""
        await self._ready.wait()

    async def stop(self) -> None:
        """Ask ``run`` to return and wait until it has; harmless if it is not running.

        Idempotent. Called before ``run`` starts, it makes ``run`` return at once.
        """
        self._stop.set()
        if self._running:
            await self._finished.wait()

    # ------------------------------------------------------------ run's tasks

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        """Keep ``_rollouts`` in step with ``HF_ROLLOUT`` (whoever writes it)."""
        while not self._stop.is_set():
            try:
                entry = await watcher.updates(timeout=0.5)  # type: ignore[no-untyped-call]
            except nats.errors.TimeoutError:
                continue
            if entry is None:  # the watcher has delivered what was stored
                self._ready.set()
                continue
            if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                self._rollouts.pop(entry.key, None)
                continue
            try:
                state = RolloutState.from_json(entry.value)
            except SchemaError as exc:
                log.warning("ignoring rollout %s: %s", entry.key, exc)
                continue
            try:
                await self._load(entry.key, state, entry.revision or 0)
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("rollout %s: NATS error re-asserting overrides: %s", entry.key, exc)

    async def _load(self, key: str, state: RolloutState, revision: int) -> None:
        known = self._rollouts.get(key)
        if not state.running:
            self._rollouts.pop(key, None)
            return
        if known is not None and known.state.plan == state.plan:
            if revision >= known.revision:
                known.state, known.revision = state, revision
            return
        plan = state.plan
        tally = ArmTally(plan.tier, plan.version, state.step_started_at)
        for beat in (*plan.baseline_seed, *self._beats_of(plan.tier, plan.site)):
            with contextlib.suppress(SchemaError):
                tally.observe(beat)
        self._rollouts[key] = _Running(state, revision, tally, state.step)
        # A controller that died mid-transition may have left overrides unwritten.
        await self._store.assign(plan, state.canary_workers)

    async def _judge_loop(self) -> None:
        while not self._stop.is_set():
            for key in list(self._rollouts):
                try:
                    await self._judge(key)
                except (TimeoutError, nats.errors.Error) as exc:
                    log.warning("rollout %s: NATS error, retrying: %s", key, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.tick_s)

    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            beat = orjson.loads(msg.data)
            tier, site, worker = beat["tier"], beat["site"], beat["worker"]
            if not all(isinstance(v, str) for v in (tier, site, worker)):
                raise TypeError("tier, site and worker must be strings")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.warning("ignoring heartbeat on %s: %s", msg.subject, exc)
            return
        self._last_beats[(tier, site, worker)] = beat
        running = self._rollouts.get(f"{tier}.{site}")
        if running is not None:
            try:
                running.tally.observe(beat)
            except SchemaError as exc:
                log.warning("ignoring heartbeat on %s: %s", msg.subject, exc)

    async def _judge(self, key: str) -> None:
        running = self._rollouts[key]
        state, tally, cfg = running.state, running.tally, self.config
        if running.tally_step != state.step:
            tally.new_step(state.step_started_at)
            running.tally_step = state.step
        now = time.time()
        switched = tally.running(state.plan.version) & set(state.canary_workers)
        if not switched and now - state.step_started_at > cfg.switch_timeout_s:
            decision = Decision(
                Verdict.ROLL_BACK,
                "switch",
                f"no canary worker ({', '.join(state.canary_workers)}) reported version "
                f"{state.plan.version} within {cfg.switch_timeout_s:g} s",
            )
        else:
            decision = self.judge.decide(tally.canary(), tally.baseline())
        workers = tally.live_workers(now, cfg.worker_ttl_s)
        new = state.apply(decision, workers, now)
        if new is state:
            if decision.reason != state.reason and now - running.reason_saved_at >= (
                cfg.status_every_s
            ):
                running.reason_saved_at = now
                await self._save(running, key, state.with_reason(decision.reason))
            return
        if await self._save(running, key, new):
            await self._carry_out(state, new, decision)

    # ------------------------------------------------------------ effects

    async def _save(self, running: _Running, key: str, new: RolloutState) -> bool:
        """Store ``new`` if nobody else changed the rollout since we read it."""
        rollouts = await self._store.rollouts()
        try:
            running.revision = await rollouts.update(key, new.to_json(), last=running.revision)
        except KeyWrongLastSequenceError:
            log.info("rollout %s changed elsewhere; reloading", key)
            return False
        running.state = new
        if not new.running:
            self._rollouts.pop(key, None)
        return True

    async def _carry_out(self, old: RolloutState, new: RolloutState, decision: Decision) -> None:
        judged = {"reason": decision.reason, "check": decision.check}
        if new.phase is RolloutPhase.ROLLED_BACK:
            await self._store.unassign(new.plan, new.canary_workers)
            await self._event("rolled_back", new, **judged, workers=list(new.canary_workers))
            return
        await self._event("promoted", new, **judged)
        if new.phase is RolloutPhase.COMPLETED:
            await self._store.set_site_version(new.plan)
            await self._store.unassign(new.plan, new.canary_workers)
            await self._event("rollout_completed", new)
            return
        added = [w for w in new.canary_workers if w not in old.canary_workers]
        await self._store.assign(new.plan, added)
        await self._event("canary_assigned", new, workers=list(new.canary_workers))

    async def _event(self, kind: str, state: RolloutState, **fields: Any) -> None:
        plan = state.plan
        event = {
            "schema": EVENT_SCHEMA,
            "at": time.time(),
            "kind": kind,
            "tier": plan.tier,
            "site": plan.site,
            "version": plan.version,
            "previous_version": plan.previous_version,
            "step": state.step,
            "share": state.share,
            **fields,
        }
        await self._nc.publish(EVENTS_SUBJECT, orjson.dumps(event))

    def _beats_of(self, tier: str, site: str) -> list[Mapping[str, Any]]:
        return [b for (t, s, _), b in self._last_beats.items() if (t, s) == (tier, site)]
