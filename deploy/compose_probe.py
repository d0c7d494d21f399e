"""Is every site of a running compose stack answering its frames? (deploy/compose-check.sh)

    .venv/bin/python deploy/compose_probe.py --env-file FILE [--window 20] [--grace 10]

For each site of docker-compose.yml, it logs in to the site's server through its host
port as ``operator-<site>`` (the password and the port come from the env file that
the stack was started with: ``HF_<SITE>_OPERATOR_PASSWORD``, ``HF_<SITE>_PORT``),
listens to ``frames.<site>.>`` and ``results.<site>.>`` for ``--window`` seconds, then
waits up to ``--grace`` seconds for the results of the frames it saw. It prints one
JSON object: per site the frames seen, results for them, missing and duplicate
results, and results by source and reason. It exits 0 when every site published
frames and each one got exactly one result, and at least one frame of the stack was
answered by the cloud (so the path through the hub, with its users, works too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "deploy"))

import nats  # noqa: E402
import orjson  # noqa: E402
import yaml  # noqa: E402
from compose_auth import compose_topology, site_password_var, site_user  # noqa: E402
from nats.aio.msg import Msg  # noqa: E402

from schemas import subjects  # noqa: E402
from schemas.codec import decode_frame, decode_result  # noqa: E402

DEFAULT_PORTS = {"site1": 14222, "site2": 14223}  # docker-compose.yml's defaults


@dataclass
class SiteTally:
    frames: list[str] = field(default_factory=list)  # frame ids, in order seen
    results: Counter[str] = field(default_factory=Counter)  # frame id -> results
    by_source: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    degraded: int = 0
    errors: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        seen = set(self.frames)
        answered = [f for f in self.frames if self.results[f] > 0]
        return {
            "frames": len(self.frames),
            "answered": len(answered),
            "missing": len(seen) - len(answered),
            "duplicates": sum(max(0, self.results[f] - 1) for f in seen),
            "by_source": dict(self.by_source),
            "by_reason": dict(self.by_reason),
            "degraded": self.degraded,
            "nats_errors": self.errors,
        }


def read_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


async def probe_site(
    site: str, url: str, window_s: float, grace_s: float, tally: SiteTally
) -> None:
    async def on_error(exc: Exception) -> None:
        tally.errors.append(str(exc))

    nc = await nats.connect(
        url,
        name=f"compose-probe-{site}",
        error_cb=on_error,
        max_reconnect_attempts=3,
        connect_timeout=5,
    )
    listening = True
    window: set[str] = set()
    all_answered = asyncio.Event()  # set when every frame seen has a result

    async def on_frame(msg: Msg) -> None:
        if listening:
            frame_id = decode_frame(msg.data).frame_id
            window.add(frame_id)
            tally.frames.append(frame_id)

    async def on_result(msg: Msg) -> None:
        result = decode_result(msg.data)
        if result.frame_id in window:
            tally.results[result.frame_id] += 1
            if not listening and all(tally.results[f] for f in window):
                all_answered.set()
            tally.by_source[result.source.value] += 1
            tally.by_reason[result.reason.value] += 1
            tally.degraded += int(result.degraded)

    try:
        # Results first: no answer to a frame seen can be missed.
        await nc.subscribe(subjects.results(site, "*"), cb=on_result)
        await nc.subscribe(subjects.frames(site, "*"), cb=on_frame)
        await nc.flush()
        await asyncio.sleep(window_s)
        listening = False
        if all(tally.results[f] for f in window):
            all_answered.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_answered.wait(), grace_s)
        await asyncio.sleep(0.5)  # a late duplicate would show now
    finally:
        await nc.close()


async def probe(env: dict[str, str], window_s: float, grace_s: float) -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    sites = sorted(compose_topology(compose))
    tallies = {site: SiteTally() for site in sites}
    jobs = []
    for site in sites:
        port = env.get(f"HF_{site.upper()}_PORT") or str(DEFAULT_PORTS.get(site, 0))
        user = site_user(site, "operator")
        password = env[site_password_var(site, "operator")]
        url = f"nats://{user}:{password}@127.0.0.1:{port}"
        jobs.append(probe_site(site, url, window_s, grace_s, tallies[site]))
    await asyncio.gather(*jobs)
    reports = {site: tally.report() for site, tally in tallies.items()}
    cloud = sum(r["by_source"].get("cloud", 0) for r in reports.values())
    every_site = all(
        r["frames"] > 0 and r["missing"] == 0 and r["duplicates"] == 0 for r in reports.values()
    )
    ok = every_site and cloud > 0
    return {"ok": ok, "window_s": window_s, "cloud_answers": cloud, "sites": reports}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env-file", required=True, help="the stack's env file")
    parser.add_argument("--window", type=float, default=20.0, help="seconds to watch frames")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds to wait for results")
    args = parser.parse_args(argv)
    report = asyncio.run(probe(read_env(Path(args.env_file)), args.window, args.grace))
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
