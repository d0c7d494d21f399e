"""Source kinds by URL scheme, and ``open_source``: a camera's URL to an opened source.

Each kind (rtsp, http, files, devices, the simulator) is a ``SourceKind`` registered
under its schemes with ``@register``; nothing here names one. A URL without a scheme
is a file, or a local device when it starts with ``/dev/video``.

A kind's sources are opened by PyAV first and by OpenCV where PyAV cannot open them
(``open_with``); which one runs is logged. A source that is not there at all
(``SourceUnavailable``) is not handed to the next backend: it would not be found either.
"""

from __future__ import annotations

import abc
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar, TypeVar

from pipeline.camera.sources.base import SourceError, SourceUnavailable, Target, VideoSource, redact
from pipeline.camera.sources.opencv import OpenCvSource
from pipeline.camera.sources.pyav import PyAvSource
from schemas.errors import ConfigError

__all__ = [
    "BACKENDS",
    "Backend",
    "SourceKind",
    "kind_for",
    "open_source",
    "open_with",
    "register",
    "scheme_of",
    "schemes",
]

log = logging.getLogger(__name__)

# Opens a target within a timeout in seconds, or raises SourceError.
Backend = Callable[[Target, float], VideoSource]

# Tried in this order.
BACKENDS: tuple[tuple[str, Backend], ...] = (("pyav", PyAvSource), ("opencv", OpenCvSource))

# A scheme is two characters or more: "C:" is a drive, not a scheme.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")


class SourceKind(abc.ABC):
    """One kind of source: how its URLs become targets, and how they are opened."""

    schemes: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def target(self, url: str, options: Mapping[str, str]) -> Target:
        """What to open for ``url``, with ``options`` over the kind's own defaults.

        Raises ``ConfigError`` for a URL of this scheme that is malformed.
        """

    def check(self, target: Target) -> None:  # noqa: B027 - optional hook
        """Raise ``ConfigError`` for what is wrong before opening (a missing file)."""

    def open(self, target: Target, timeout_s: float) -> VideoSource:
        """The opened source (blocking); ``SourceError`` when it cannot be opened."""
        return open_with(BACKENDS, target, timeout_s)


_KINDS: dict[str, SourceKind] = {}

K = TypeVar("K", bound=type[SourceKind])


def register(cls: K) -> K:
    """Class decorator: make ``cls`` the kind of each of its schemes."""
    kind = cls()
    for scheme in cls.schemes:
        if scheme in _KINDS:
            raise ConfigError(f"source scheme {scheme!r} is registered twice")
        _KINDS[scheme] = kind
    return cls


def schemes() -> tuple[str, ...]:
    """Every registered scheme, sorted."""
    return tuple(sorted(_KINDS))


def scheme_of(url: str) -> str:
    """The scheme that picks ``url``'s kind: its own, else ``device`` or ``file``."""
    match = _SCHEME.match(url)
    if match is not None:
        return match[1].lower()
    return "device" if url.startswith("/dev/video") else "file"


def kind_for(url: str) -> SourceKind:
    """The kind that opens ``url``; ``ConfigError`` naming the known schemes if none."""
    scheme = scheme_of(url)
    kind = _KINDS.get(scheme)
    if kind is None:
        raise ConfigError(
            f"no video source for scheme {scheme!r} in {redact(url)!r}; "
            f"use one of {', '.join(s + ':' for s in schemes())} or a file path"
        )
    return kind


def open_source(
    url: str, *, options: Mapping[str, str] | None = None, timeout_s: float = 10.0
) -> VideoSource:
    """Open ``url`` (blocking: call it from a reader thread).

    ``options`` go to the backend over the kind's defaults; ``timeout_s`` bounds the
    open and each read. Raises ``ConfigError`` for a URL no kind takes or a malformed
    one, ``SourceError`` when the source cannot be opened.
    """
    kind = kind_for(url)
    target = kind.target(url, options or {})
    kind.check(target)
    return kind.open(target, timeout_s)


def open_with(
    backends: Sequence[tuple[str, Backend]], target: Target, timeout_s: float
) -> VideoSource:
    """``target`` opened by the first of ``backends`` that can, each tried in order."""
    where = redact(target.location)
    refusals: list[str] = []
    for position, (name, backend) in enumerate(backends):
        try:
            source = backend(target, timeout_s)
        except SourceUnavailable:
            raise
        except SourceError as exc:
            refusals.append(str(exc))
            following = backends[position + 1 : position + 2]
            if following:
                log.warning("%s; trying %s", exc, following[0][0])
            continue
        log.debug("%s: decoding with %s", where, name)
        return source
    raise SourceError("; ".join(refusals) or f"no backend for {where}", retriable=target.live)
