"""What the property tests of the wire decoders draw, and how they change a map.

``scalar_values`` draws any value a decoded map may hold, weighted towards the values at
the contract's edges (the bounds of priorities, regions, classes, shapes, sequence
numbers and times; names of enum values and unsafe subject tokens). ``key_paths``
lists every place in a decoded map and ``replaced`` puts another value there, or
removes the key, the way a faulty or hostile writer would.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Collection
from typing import Any

from hypothesis import strategies as st

from schemas.limits import MAX_UNIX_TIME
from tests.unit.wire_samples import DELETE

EDGE_INTS = [0, 1, 2, 3, 4, -1, 63, 64, 65, 999, 1000, 65536, 65537, 2**63 - 1, 2**63, 2**64 - 1]
EDGE_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 0.0, 0.5, 1.0, 1.0000001, 5e-324, 1e308,
               -1.0, MAX_UNIX_TIME, MAX_UNIX_TIME + 1]  # fmt: skip
EDGE_TEXT = [
    "", "a.b", "*", ">", "a b", "x" * 65, "local_only", "embedding", "crop", "full", "uint8",
    "float32", "frame", "result", "escalation", "dead_letter", "device", "edge", "cloud",
    "confident", "unchanged",
]  # fmt: skip


def scalar_values(*, json: bool = False) -> st.SearchStrategy[Any]:
    """Any scalar a decoded map may hold; with ``json``, only what JSON can carry.

    JSON has no NaN, no infinity and no bytes.
    """
    floats = [v for v in EDGE_FLOATS if math.isfinite(v)] if json else EDGE_FLOATS
    parts: list[st.SearchStrategy[Any]] = [
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.sampled_from(EDGE_INTS),
        st.floats(allow_nan=not json, allow_infinity=not json),
        st.sampled_from(floats),
        st.text(max_size=12),
        st.sampled_from(EDGE_TEXT),
    ]
    if not json:
        parts.append(st.binary(max_size=64))
    return st.one_of(*parts)


def key_paths(
    value: Any, prefix: tuple[Any, ...] = (), *, skip: Collection[str] = ()
) -> list[tuple[Any, ...]]:
    """Every key path in a decoded document, depth first; none that ends in ``skip``."""
    out: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        if key not in skip:
            out.append((*prefix, key))
        if isinstance(child, dict | list):
            out.extend(key_paths(child, (*prefix, key), skip=skip))
    return out


def value_at(raw: Any, path: tuple[Any, ...]) -> Any:
    """The value at ``path`` in a decoded document."""
    for key in path:
        raw = raw[key]
    return raw


def replaced(raw: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A deep copy of ``raw`` with ``value`` at ``path``, or without it for ``DELETE``."""
    out = copy.deepcopy(raw)
    parent = value_at(out, path[:-1])
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out
