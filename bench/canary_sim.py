"""Monte-Carlo simulation of the canary judge: error rates and frames to a decision.

Run ``python -m bench.canary_sim`` (``--runs`` per scenario, default 2000; ``--seed``,
default 0; ``--out``, default bench/results/canary_sim.json). It prints a table and
writes the figures as JSON. docs/rollout.md quotes them.

What is simulated: the default ``CanaryConfig`` and the default plan (10% -> 50% ->
100%) on a site of 10 workers that each handle 100 frames per heartbeat (50 frames/s,
one heartbeat every 2 s). A tenth of the frames are compared with the cloud. The
baseline model agrees with the cloud on 95% of them, escalates 5% of frames and fails
on 0.1%. Each worker-interval p95 latency is 15 ms times a log-normal factor
(sigma 0.25). Before the rollout the fleet ran the old version for
``--history-heartbeats`` heartbeats (default 30, one minute); that is the baseline's
head start.
Step 1 has 1 canary worker and 9 baseline ones, step 2 has 5 and 5; each step is judged
on its own evidence, as the controller does, and the judge runs after every
heartbeat. Every counter is a binomial draw.

Each scenario changes one property of the canary; the last three also start the
rollout with no head start for the baseline. ``rolled back`` and ``completed``
are shares of runs, with a 95% Wilson interval. "frames" and "compared" count the
canary's frames until the final decision, summed over the steps. A run with no
decision after ``MAX_HEARTBEATS`` in a step is counted as undecided.

A benchmark: it asserts nothing. The run is deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from pipeline.release.judge import CanaryConfig, CanaryJudge, Verdict, wilson_interval
from pipeline.release.tallies import ArmCounters

WORKERS = 10
FRAMES_PER_HEARTBEAT = 100
COMPARED_SHARE = 0.10
HEARTBEAT_S = 2.0
CANARIES_PER_STEP = (1, 5)  # ceil(0.1 * 10), ceil(0.5 * 10); 1.0 completes
MAX_HEARTBEATS = 5000  # per step; bounds the run
LATENCY_SIGMA = 0.25
LATENCY_WINDOW = 256
OUT = Path(__file__).parent / "results" / "canary_sim.json"
Z95 = 1.96  # the shares' 95% Wilson intervals


@dataclass(frozen=True, slots=True)
class Arm:
    """One model's behaviour: rates per frame (agreement per compared frame)."""

    agreement: float
    escalation: float
    failure: float
    latency_ms: float


BASELINE = Arm(agreement=0.95, escalation=0.05, failure=0.001, latency_ms=15.0)


def _canary(**changes: float) -> Arm:
    """The baseline with ``changes``: each scenario changes one property of the canary."""
    return replace(BASELINE, **changes)


# name -> (canary, baseline head start in heartbeats; None: --history-heartbeats)
SCENARIOS: dict[str, tuple[Arm, int | None]] = {
    "equal": (BASELINE, None),
    "better (0.97)": (_canary(agreement=0.97), None),
    "1 pt worse (0.94)": (_canary(agreement=0.94), None),
    "2 pt worse = margin (0.93)": (_canary(agreement=0.93), None),
    "3.5 pt worse (0.915)": (_canary(agreement=0.915), None),
    "5 pt worse = detect (0.90)": (_canary(agreement=0.90), None),
    "bad (0.10)": (_canary(agreement=0.10), None),
    "escalates 25%": (_canary(escalation=0.25), None),
    "fails 10%": (_canary(failure=0.10), None),
    "p95 40 ms": (_canary(latency_ms=40.0), None),
    # A rollout started as the fleet starts: the baseline grows during step 1 only.
    "equal, no head start": (BASELINE, 0),
    "margin, no head start": (_canary(agreement=0.93), 0),
    "detect, no head start": (_canary(agreement=0.90), 0),
}


class _Tally:
    """Running counters of one arm (what ArmTally would sum from heartbeats)."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(("frames", "escalated", "errors", "compared", "agreed"), 0)
        self.latency: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def add(self, rng: np.random.Generator, arm: Arm, workers: int) -> None:
        frames = FRAMES_PER_HEARTBEAT * workers
        compared = int(rng.binomial(frames, COMPARED_SHARE))
        self.counts["frames"] += frames
        self.counts["compared"] += compared
        self.counts["agreed"] += int(rng.binomial(compared, arm.agreement))
        self.counts["escalated"] += int(rng.binomial(frames, arm.escalation))
        self.counts["errors"] += int(rng.binomial(frames, arm.failure))
        factors = rng.lognormal(0.0, LATENCY_SIGMA, size=workers)
        self.latency.extend((arm.latency_ms * factors).tolist())

    def counters(self) -> ArmCounters:
        # statistics.median: ten times faster than numpy on 256 floats.
        median = statistics.median(self.latency) if self.latency else 0.0
        return ArmCounters(
            **self.counts, latency_p95_ms=median, latency_intervals=len(self.latency)
        )


def _run(
    judge: CanaryJudge, canary_arm: Arm, rng: np.random.Generator, history: int
) -> tuple[str, str, int, int, int]:
    """One rollout: (outcome, check, canary frames, canary compared, heartbeats)."""
    baseline = _Tally()
    for _ in range(history):
        baseline.add(rng, BASELINE, WORKERS)
    frames = compared = beats = 0
    for canaries in CANARIES_PER_STEP:
        canary = _Tally()  # every step on fresh evidence
        decision = None
        for _ in range(MAX_HEARTBEATS):
            canary.add(rng, canary_arm, canaries)
            baseline.add(rng, BASELINE, WORKERS - canaries)
            beats += 1
            decision = judge.decide(canary.counters(), baseline.counters())
            if decision.verdict is not Verdict.WAIT:
                break
        frames += canary.counts["frames"]
        compared += canary.counts["compared"]
        if decision is None or decision.verdict is Verdict.WAIT:
            return "undecided", "", frames, compared, beats
        if decision.verdict is Verdict.ROLL_BACK:
            return "rolled_back", decision.check, frames, compared, beats
    return "completed", "", frames, compared, beats


def simulate(runs: int, seed: int, history: int) -> dict[str, Any]:
    """Every scenario ``runs`` times; the figures docs/rollout.md quotes."""
    judge = CanaryJudge(CanaryConfig())
    out: dict[str, Any] = {}
    for index, (name, (arm, head_start)) in enumerate(SCENARIOS.items()):
        rng = np.random.default_rng([seed, index])
        start = history if head_start is None else head_start
        results = [_run(judge, arm, rng, start) for _ in range(runs)]
        outcomes = Counter(r[0] for r in results)
        checks = Counter(r[1] for r in results if r[0] == "rolled_back")
        frames = np.array([r[2] for r in results])
        compared = np.array([r[3] for r in results])
        beats = np.array([r[4] for r in results])
        row: dict[str, Any] = {"canary": asdict(arm), "history_heartbeats": start, "runs": runs}
        for outcome in ("rolled_back", "completed", "undecided"):
            k = outcomes.get(outcome, 0)
            low, high = wilson_interval(k, runs, Z95)
            row[outcome] = {"count": k, "share": k / runs, "ci95": [low, high]}
        row["roll_back_checks"] = dict(sorted(checks.items()))
        for label, values in (("frames", frames), ("compared", compared), ("heartbeats", beats)):
            row[label] = {
                "median": float(np.median(values)),
                "p95": float(np.percentile(values, 95)),
                "max": int(values.max()),
            }
        out[name] = row
    return out


def _table(results: dict[str, Any]) -> str:
    header = (
        f"{'scenario':<28}{'rolled back':>26}{'completed':>26}"
        f"{'frames med/p95':>18}{'compared med':>14}{'time med':>10}"
    )
    lines = [header, "-" * len(header)]
    for name, row in results.items():

        def share(outcome: str, row: dict[str, Any] = row) -> str:
            cell = row[outcome]
            low, high = cell["ci95"]
            return f"{cell['share']:6.2%} [{low:.2%}, {high:.2%}]"

        frames = f"{row['frames']['median']:,.0f}/{row['frames']['p95']:,.0f}"
        seconds = row["heartbeats"]["median"] * HEARTBEAT_S
        lines.append(
            f"{name:<28}{share('rolled_back'):>26}{share('completed'):>26}"
            f"{frames:>18}{row['compared']['median']:>14,.0f}{seconds:>9,.0f}s"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulation, print the table, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.canary_sim", description=__doc__)
    parser.add_argument("--runs", type=int, default=2000, help="runs per scenario")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--history-heartbeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 100_000:
        parser.error("--runs must be in 1..100000")
    started = time.perf_counter()
    results = simulate(args.runs, args.seed, args.history_heartbeats)
    print(_table(results))
    document = {
        "command": "python -m bench.canary_sim "
        + f"--runs {args.runs} --seed {args.seed} --history-heartbeats {args.history_heartbeats}",
        "config": asdict(CanaryConfig()),
        "fleet": {
            "workers": WORKERS,
            "frames_per_heartbeat": FRAMES_PER_HEARTBEAT,
            "heartbeat_s": HEARTBEAT_S,
            "compared_share": COMPARED_SHARE,
            "canaries_per_step": list(CANARIES_PER_STEP),
            "baseline": asdict(BASELINE),
            "latency_sigma": LATENCY_SIGMA,
            "history_heartbeats": args.history_heartbeats,
            "max_heartbeats_per_step": MAX_HEARTBEATS,
        },
        "scenarios": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    print(f"wrote {args.out} ({document['seconds']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
