"""Output decoders: a model's raw output tensors -> one answer per image.

Each decoder is a pure function registered by name with the frozen dataclass of its
parameters; a model's manifest entry names it (``decoder.type``) and sets the
parameters. ``DECODERS[name]`` gives both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.inference.geometry import Geometry
from pipeline.inference.outputs import Decoded

__all__ = ["DECODERS", "DecodeFn", "DecoderKind", "register"]

# (outputs by tensor name, batch first; one Geometry per image; the parameters) ->
# one answer per image.
DecodeFn = Callable[[Mapping[str, np.ndarray], Sequence[Geometry], Any], list[Decoded]]


@dataclass(frozen=True, slots=True)
class DecoderKind:
    """A registered decoder: its name, its parameters' dataclass, the function."""

    name: str
    params: type[Any]
    decode: DecodeFn


DECODERS: dict[str, DecoderKind] = {}


def register(name: str, params: type[Any]) -> Callable[[DecodeFn], DecodeFn]:
    """Decorator: register ``decode`` under ``name`` with its parameters' dataclass."""

    def add(decode: DecodeFn) -> DecodeFn:
        if name in DECODERS:
            raise ValueError(f"decoder {name!r} is registered twice")
        DECODERS[name] = DecoderKind(name, params, decode)
        return decode

    return add


# Importing the decoders registers them; they import ``register`` from here, above.
from pipeline.inference.decoders import (  # noqa: E402
    classify,
    ctc,
    db,
    embedding,
    ssd,
    yolo,
)

__all__ += ["classify", "ctc", "db", "embedding", "ssd", "yolo"]
