"""Configuration: typed, frozen, validated at start.

Sources, later wins: defaults (enough for the embedded stack), a TOML file, then
environment variables ``HYBRIDFLEET_<SECTION>_<KEY>`` (e.g.
``HYBRIDFLEET_EDGE_MAX_BATCH_SIZE=16``). Each section is built by
:func:`pipeline.declared.build`, as model manifests are: an unknown key, a wrong type
or a value out of range is a ``ConfigError`` that names the key and what would be
right (the allowed keys and the closest, the type, the range or the choices); a string
is read as the number or the true/false it spells, as environment variables are.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pipeline.declared import build, checked, one_of, ranged
from schemas.errors import ConfigError, SchemaError
from schemas.limits import DEFAULT_MAX_BYTES, NATS_MAX_PAYLOAD
from schemas.subjects import check_token

__all__ = [
    "CloudSettings",
    "EdgeSettings",
    "NatsSettings",
    "Settings",
    "StreamSettings",
    "WorkerSettings",
    "load_settings",
    "read_toml",
    "usable_cores",
]

ENV_PREFIX = "HYBRIDFLEET_"


def _range(default: Any, lo: float, hi: float) -> Any:
    return ranged(default, lo=lo, hi=hi)


def _choice(default: str, *choices: str) -> Any:
    return one_of(default, *choices)


def _not_a_token(value: str) -> str | None:
    try:
        check_token(value, "name")
    except SchemaError:
        return f"must be 1-64 letters, digits, '_' or '-', got {value!r}"
    return None


def _token(default: str) -> Any:
    # Becomes part of subject names: validated like a site or camera name.
    return checked(_not_a_token, default)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (a cpuset, ``taskset``), or
    all of the machine's where the platform has none."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _not_providers(value: str) -> str | None:
    # Imported here, not at the top: only a setting that names providers pays for
    # importing onnxruntime.
    from pipeline.inference.providers import PROVIDERS

    unknown = [p for p in _split(value) if p not in PROVIDERS]
    if not unknown:
        return None
    close = difflib.get_close_matches(unknown[0], list(PROVIDERS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"must be onnxruntime execution providers separated by commas, each one of "
        f"{', '.join(PROVIDERS)}; got {unknown[0]!r}{hint}"
    )


@dataclass(frozen=True)
class NatsSettings:
    """How to reach this process's NATS server (a site's own server for edge workers)."""

    # Comma-separated URLs are tried in turn (e.g. the nodes of a hub cluster).
    url: str = "nats://127.0.0.1:4222"
    connect_timeout_s: float = _range(5.0, 0.1, 300.0)
    # TLS: the CA that signed the server's certificate, and this client's own
    # certificate and key when the server verifies clients. Empty: no TLS.
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""


@dataclass(frozen=True)
class StreamSettings:
    """The streams. Defaults favour not losing an accepted escalation (docs/topology.md).

    A site's escalation stream refuses new escalations when ``max_bytes`` is reached
    (discard ``new``): stored ones are never dropped to make room, and the edge answers
    the refused frames itself (reason ``escalation_failed``).
    """

    max_bytes: int = _range(1 << 30, 1 << 16, 1 << 44)
    # The longest WAN outage a site's escalations survive.
    max_age_s: float = _range(86_400.0, 60.0, 365 * 86_400.0)
    # Window in which a re-published frame id is recognised as a duplicate.
    duplicate_window_s: float = _range(120.0, 1.0, 86_400.0)
    # Replicas of the cloud-side streams (3 on a 3-node hub); site streams have 1.
    replicas: int = _range(1, 1, 5)


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker has, edge or cloud."""

    @property
    def threads(self) -> int:
        """``inference_threads``, 0 (auto) resolved to :func:`usable_cores` (at most 64)."""
        return self.inference_threads or min(usable_cores(), 64)

    @property
    def provider_list(self) -> tuple[str, ...]:
        """``providers`` as a tuple, () for the manifest's."""
        return tuple(_split(self.providers))

    max_message_bytes: int = _range(DEFAULT_MAX_BYTES, 1024, 64 << 20)
    # Batches in the model at once (the edge) and threads of the model's pool; 0: one
    # per core this process may run on (its CPU affinity; ``threads``). Each edge batch
    # in flight holds up to max_batch_size decoded frames (2.7 MB each at 720p RGB).
    inference_threads: int = _range(0, 0, 64)
    # How this deployment runs the tier's models, in place of their manifest entries'
    # values (docs/operations.md, "How a deployment runs its models"): onnxruntime
    # execution providers in order, comma-separated (a missing one falls back as a
    # manifest's does), intra-op threads (of one model call), and images per model call
    # (input.max_batch; at the edge, not max_batch_size). Empty or 0: the manifest's.
    # providers and max_batch need `models`; intra_op_threads also sets the region
    # classifier's (and that of a bundle replacing it).
    providers: str = checked(_not_providers, "")
    intra_op_threads: int = _range(0, 0, 256)
    max_batch: int = _range(0, 0, 4096)
    model_manifest: str = ""  # empty: the manifest shipped in models/
    # Heartbeats on fleet.heartbeat.<site>.<worker> and in KV HF_FLEET
    # (pipeline/fleet/heartbeat.py).
    heartbeat_interval_s: float = _range(2.0, 0.05, 3600.0)
    # Model bundles (docs/model-bundles.md): Ed25519 public keys (hex, comma-separated)
    # whose signatures this worker trusts. Empty: the worker runs its shipped model and
    # does not follow HF_DESIRED. bundle_dir: local cache (empty: a temp folder).
    trusted_keys: str = ""
    bundle_dir: str = ""
    # Fault injection for tests and benchmarks: extra time each batch takes.
    inject_latency_ms: float = _range(0.0, 0.0, 600_000.0)


@dataclass(frozen=True)
class EdgeSettings(WorkerSettings):
    """One edge worker of one site."""

    site: str = _token("site1")
    worker_id: str = _token("edge-1")
    max_batch_size: int = _range(32, 1, 4096)
    # Time a frame may spend queued plus in the model at the edge.
    latency_target_ms: float = _range(20.0, 0.1, 60_000.0)
    queue_capacity: int = _range(1024, 1, 1_000_000)
    default_threshold: float = _range(0.9, 0.0, 1.0)
    # How a frame's confidence is read from its calibrated probabilities
    # (pipeline/inference/calibration.py; `hybridfleet tune` reports which works best).
    confidence_signal: str = _choice("max_probability", "max_probability", "margin", "entropy")
    # "hybrid" (the decision table), "edge_only" (never escalate) or "cloud_only"
    # (escalate every frame its privacy class lets leave): baselines and pinning.
    routing: str = _choice("hybrid", "hybrid", "edge_only", "cloud_only")
    # Assumed cloud round trip until enough have been measured.
    cloud_round_trip_prior_ms: float = _range(50.0, 0.0, 60_000.0)
    escalation_publish_timeout_s: float = _range(2.0, 0.05, 60.0)
    # JetStream domain of the cloud's streams; empty when they are on this same server.
    cloud_domain: str = ""
    # Drift monitoring (edge_worker/drift.py): the share of confidently kept frames also
    # sent to the cloud only to be compared, the sampler's key, and how often the
    # worker publishes its health on health.<site>.
    shadow_rate: float = _range(0.02, 0.0, 1.0)
    shadow_seed: int = _range(0, 0, (1 << 63) - 1)
    health_interval_s: float = _range(5.0, 0.05, 3600.0)
    # The site's cloud spend cap per UTC day in US dollars, shared by its edge workers
    # (edge_worker/budget.py); 0: no cap. Escalations are priced with the default
    # pipeline.planning.costs.CostModel.
    daily_cloud_budget_usd: float = _range(0.0, 0.0, 1e9)
    # Heat and load (edge_worker/thermal.py): "auto" reads /sys/class/thermal where a zone
    # answers and simulates otherwise; "simulated" always simulates. From hot_c on, and
    # as the queue passes half full, the confidence threshold of frames that may leave
    # rises by up to threshold_raise (more goes to the cloud), and low-priority frames
    # that may not leave are shed.
    thermal: str = _choice("auto", "auto", "simulated")
    hot_c: float = _range(70.0, 0.0, 150.0)
    critical_c: float = _range(85.0, 1.0, 200.0)
    threshold_raise: float = _range(0.05, 0.0, 1.0)
    # Blur faces (edge_worker/sanitize.py) in every whole frame that leaves the site.
    face_blur: bool = True
    # Fault injection for tests: extra time the worker takes to read each frame.
    inject_intake_latency_ms: float = _range(0.0, 0.0, 60_000.0)
    # How frames reach the worker (docs/reliability.md, "Slow consumers"): "stream", pulled
    # from the site's bounded stream FRAMES_<site> (memory, newest kept), never more than
    # the worker asks for, what the stream discards counted once per site; or
    # "subscription", pushed to a queue-group subscription with the pending limits below.
    # Every edge worker of a site must use the same one. "stream" is the default
    # for now (docs/reliability.md, "Slow consumers", says why).
    intake: str = _choice("stream", "stream", "subscription")
    # FRAMES_<site>: at most this many frames and bytes (all cameras together, and per
    # camera unless 0), none older than max_age_s; beyond them the oldest are discarded
    # and counted (hybridfleet_edge_dropped_frames_total{place="site_stream"}). The bytes
    # are the site server's memory; at least NATS_MAX_PAYLOAD, so any frame fits.
    intake_stream_frames: int = _range(2048, 1, 100_000_000)
    intake_stream_bytes: int = _range(64 << 20, NATS_MAX_PAYLOAD, 1 << 40)
    intake_stream_frames_per_camera: int = _range(0, 0, 100_000_000)
    intake_stream_max_age_s: float = _range(60.0, 1.0, 86_400.0)
    # Frames received and not yet read by the worker: per subject of a subscription, per
    # pull request from FRAMES_<site> (a larger frame is pulled alone). Beyond this a
    # subscription drops and counts (place "intake"); below nats-server's 64 MiB
    # max_pending, so the worker, not the server, drops: a server cuts a slow consumer
    # off and its backlog is lost uncounted.
    intake_pending_frames: int = _range(8192, 1, 1_000_000)
    intake_pending_bytes: int = _range(32 << 20, 1 << 20, 60 << 20)
    # A frame captured further than this from the worker's clock, either way, is refused
    # (dead letter): its deadline and latency would mean nothing.
    max_clock_skew_s: float = _range(300.0, 1.0, 86_400.0)
    # Frame ids remembered after their final result, so that a repeat gets the same
    # answer (edge_worker/repeats.py).
    remember_frame_ids: int = _range(10_000, 0, 10_000_000)
    # On drain, escalated frames still waiting for the cloud get their edge answer
    # (degraded, cloud_timeout) after at most this long.
    drain_timeout_s: float = _range(10.0, 0.0, 3600.0)
    # The manifest roles this edge runs, in order (docs/models.md), e.g.
    # "shop-detect" or "text-det,text-rec"; empty: the region classifier of role "edge".
    models: str = ""
    # JPEG quality of the crops and whole frames an encoded (JPEG/PNG) frame escalates.
    crop_jpeg_quality: int = _range(90, 1, 100)
    # Track text lines across a camera's frames: the cloud is asked about a label once
    # and its reading reused, until the edge reads it differently (edge_worker/tracks.py).
    track_lines: bool = True


@dataclass(frozen=True)
class CloudSettings(WorkerSettings):
    """One cloud worker."""

    worker_id: str = _token("cloud-1")
    fetch_batch: int = _range(64, 1, 4096)
    fetch_timeout_s: float = _range(0.5, 0.01, 60.0)
    # Unacked escalations are redelivered after this long (to another worker); a
    # batch that runs longer is kept alive with in-progress acks every ack_wait/3.
    ack_wait_s: float = _range(30.0, 1.0, 3600.0)
    # After this many deliveries an escalation is dead-lettered.
    max_deliver: int = _range(5, 1, 1000)
    # Redelivery delays in seconds, comma-separated (empty: ack_wait every time).
    backoff_s: str = ""
    # The sites whose escalation streams the cloud sources, comma-separated.
    sites: str = "site1"
    # True when each site runs its own server with JetStream domain = site name.
    sites_are_domains: bool = False
    # What to do with an escalation whose deadline passed (e.g. during a WAN outage):
    # "answer" it anyway (for drift and audit; the edge already gave a degraded result)
    # or "drop" it unanswered.
    expired_escalations: str = _choice("answer", "answer", "drop")
    # Fault injection: frame ids starting with this prefix make the model fail (a
    # poison message).
    inject_failure_prefix: str = ""
    # Non-urgent escalations (priority 3, deadline beyond defer_max_s + 5 s) wait until
    # defer_batch of them are parked or the oldest has waited defer_max_s, so they are
    # answered in bigger, cheaper batches. 0: never wait. Parked ones stay unacked and
    # in progress, so a crash loses none of them. Bounded by the consumer's
    # max_ack_pending.
    defer_batch: int = _range(0, 0, 100_000)
    defer_max_s: float = _range(60.0, 0.01, 86_400.0)
    # The manifest roles the cloud runs on what it is sent, in order (docs/models.md),
    # e.g. "shop-classify"; empty: the region classifier of role "cloud".
    models: str = ""
    # Fetched batches answered at once: more than 1 overlaps one batch's decoding,
    # replies and the next fetch with another's model call (a GPU waits less), using
    # that many threads of the pool (inference_threads).
    batches_in_flight: int = _range(1, 1, 64)

    @property
    def site_list(self) -> list[str]:
        return _split(self.sites)

    @property
    def backoff(self) -> list[float]:
        return [float(v) for v in self.backoff_s.split(",") if v.strip()]


@dataclass(frozen=True)
class Settings:
    """Everything a hybridfleet process reads at start."""

    nats: NatsSettings = NatsSettings()
    stream: StreamSettings = StreamSettings()
    edge: EdgeSettings = EdgeSettings()
    cloud: CloudSettings = CloudSettings()


T = TypeVar("T")


def _build(cls: type[T], section: str, values: Mapping[str, Any]) -> T:
    """Section ``section`` from its values (TOML values and environment strings)."""
    built = build(cls, values, "", path=section, error=ConfigError, strings=True)
    _check_lists(section, built)
    return built


def _check_deployment(section: str, settings: EdgeSettings | CloudSettings) -> None:
    if (settings.providers or settings.max_batch) and not settings.models:
        edge = isinstance(settings, EdgeSettings)
        frames = f"; to size batches of frames, set {section}.max_batch_size" if edge else ""
        raise ConfigError(
            f"{section}.providers and {section}.max_batch set how the declared models of "
            f"{section}.models run; with {section}.models empty the region classifier runs "
            "on its manifest entry's providers, a batch's regions in one call: set "
            f"{section}.models or leave them unset ({section}.intra_op_threads applies to "
            f"both){frames}"
        )


def _check_lists(section: str, settings: Any) -> None:
    """Validate the comma-separated list settings, which plain types cannot."""
    if isinstance(settings, EdgeSettings | CloudSettings):
        _check_deployment(section, settings)
    if isinstance(settings, CloudSettings):
        for site in settings.site_list:
            try:
                check_token(site, f"{section}.sites")
            except SchemaError as exc:
                raise ConfigError(str(exc)) from None
        if not settings.site_list:
            raise ConfigError(f"{section}.sites must name at least one site")
        try:
            delays = settings.backoff
        except ValueError:
            raise ConfigError(
                f"{section}.backoff_s must be seconds separated by commas, "
                f"got {settings.backoff_s!r}"
            ) from None
        if any(d <= 0 for d in delays):
            raise ConfigError(f"{section}.backoff_s delays must be > 0")
        if len(delays) >= settings.max_deliver:
            raise ConfigError(
                f"{section}.backoff_s lists {len(delays)} delays; it needs fewer than "
                f"{section}.max_deliver ({settings.max_deliver})"
            )
        threads = settings.inference_threads
        if threads and threads < settings.batches_in_flight:
            raise ConfigError(
                f"{section}.batches_in_flight ({settings.batches_in_flight}) needs as many "
                f"threads: {section}.inference_threads is {threads}"
            )


def read_toml(path: Path | str, what: str) -> dict[str, Any]:
    """The TOML document at ``path``; a ``ConfigError`` saying why not, naming ``what``."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None


def load_settings(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from an optional TOML file and ``HYBRIDFLEET_*`` environment variables."""
    env = os.environ if env is None else env
    raw: dict[str, dict[str, Any]] = {}
    if path is not None:
        data = read_toml(path, "config file")
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{section} must be a [section] table in {path}")
            raw[section] = dict(values)
    sections = {f.name: f.type for f in dataclasses.fields(Settings)}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections or not key:
            raise ConfigError(
                f"environment variable {name} names no setting; use "
                f"{ENV_PREFIX}<SECTION>_<KEY> with SECTION one of {', '.join(sections)}"
            )
        raw.setdefault(section, {})[key] = value
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}]; known: {', '.join(sections)}")
    return Settings(
        nats=_build(NatsSettings, "nats", raw.get("nats", {})),
        stream=_build(StreamSettings, "stream", raw.get("stream", {})),
        edge=_build(EdgeSettings, "edge", raw.get("edge", {})),
        cloud=_build(CloudSettings, "cloud", raw.get("cloud", {})),
    )
