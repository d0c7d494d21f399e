"""How a worker declares its Prometheus metrics, each worker in a registry of its own.

A registry per worker lets the embedded stack run several workers in one process
and read each one's counters for its summary. A worker's metrics class lists its
metrics as class attributes made by ``counter``, ``gauge``, ``histogram`` and
``info``; ``WorkerMetrics`` creates them for each instance, named
``hybridfleet_<tier>_<name>`` (``name`` defaults to the attribute's) and labelled
first with the tier's ``worker_labels``, in the order the class lists them, then
those it inherits. ``value`` reads a sample back.

Every worker runs a model and follows its desired model (pipeline/release/modelswap.py):
``WorkerMetrics`` itself declares ``model_swaps``, ``bundle_refusals`` and ``model``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, overload

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

__all__ = [
    "BATCH_BUCKETS",
    "Declared",
    "WorkerMetrics",
    "counter",
    "gauge",
    "histogram",
    "info",
]

M = TypeVar("M", Counter, Gauge, Histogram, Info)

# (full name, label names, registry) -> the metric
_Make = Callable[[str, list[str], CollectorRegistry], M]

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass(frozen=True, slots=True)
class Declared(Generic[M]):
    """One metric of a worker's metrics class; each instance gets its own.

    ``labels`` follow the tier's ``worker_labels`` (unless ``per_worker`` is False);
    ``name`` is the metric's name after ``hybridfleet_<tier>_``, None for the
    attribute's name.
    """

    make: _Make[M]
    labels: tuple[str, ...] = ()
    name: str | None = None
    per_worker: bool = True

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Declared[M]: ...

    @overload
    def __get__(self, obj: WorkerMetrics, owner: type[Any]) -> M: ...

    def __get__(self, obj: WorkerMetrics | None, owner: type[Any]) -> Declared[M] | M:
        if obj is None:
            return self
        # WorkerMetrics.__init__ gives every instance its own metric under this name.
        raise AttributeError(f"{owner.__name__}: a metric read before it was made")


def counter(documentation: str, *labels: str, name: str | None = None) -> Declared[Counter]:
    """A counter (exposed as ``<name>_total``)."""

    def make(full: str, labelnames: list[str], registry: CollectorRegistry) -> Counter:
        return Counter(full, documentation, labelnames, registry=registry)

    return Declared(make, labels, name)


def gauge(documentation: str, *labels: str, name: str | None = None) -> Declared[Gauge]:
    """A gauge."""

    def make(full: str, labelnames: list[str], registry: CollectorRegistry) -> Gauge:
        return Gauge(full, documentation, labelnames, registry=registry)

    return Declared(make, labels, name)


def histogram(
    documentation: str, *labels: str, buckets: tuple[float, ...], name: str | None = None
) -> Declared[Histogram]:
    """A histogram with the given upper bounds (``+Inf`` is added)."""

    def make(full: str, labelnames: list[str], registry: CollectorRegistry) -> Histogram:
        return Histogram(full, documentation, labelnames, buckets=buckets, registry=registry)

    return Declared(make, labels, name)


def info(documentation: str, *, name: str | None = None) -> Declared[Info]:
    """An info metric (exposed as ``<name>_info``); it has no worker labels."""

    def make(full: str, labelnames: list[str], registry: CollectorRegistry) -> Info:
        return Info(full, documentation, labelnames, registry=registry)

    return Declared(make, (), name, per_worker=False)


class WorkerMetrics:
    """The metrics a subclass declares, made in ``registry`` (a new one by default)."""

    tier: ClassVar[str]
    worker_labels: ClassVar[tuple[str, ...]] = ()

    model_swaps = counter(
        "Times the worker switched to another model (desired state in HF_DESIRED)."
    )
    bundle_refusals = counter(
        "Model bundles refused (bad signature or checksum, unreachable); the model ran on."
    )
    model = info("The model this worker runs.")

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        prefix = f"hybridfleet_{self.tier}_"
        for attribute, declared in _declarations(type(self)):
            labels = [*self.worker_labels, *declared.labels] if declared.per_worker else []
            full = prefix + (declared.name or attribute)
            setattr(self, attribute, declared.make(full, labels, self.registry))

    def value(self, name: str, **labels: str) -> float:
        """Read one sample back (0 when it has not been observed yet)."""
        return self.registry.get_sample_value(name, labels) or 0.0


def _declarations(cls: type) -> Iterator[tuple[str, Declared[Any]]]:
    """The metrics ``cls`` declares, in the order listed, then those it inherits."""
    seen: dict[str, Declared[Any]] = {}
    for klass in cls.__mro__:
        for attribute, value in vars(klass).items():
            if isinstance(value, Declared) and attribute not in seen:
                seen[attribute] = value
    yield from seen.items()
