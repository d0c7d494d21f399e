"""pipeline.declared: frozen dataclasses built from mappings, and every way one is refused."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import pytest

from pipeline.declared import (
    Variant,
    build,
    build_variant,
    checked,
    dump,
    one_of,
    ranged,
    shorthand,
    validate,
    variant,
)
from schemas.errors import ConfigError, ModelError


class Level(StrEnum):
    """An enum read from its value."""

    LOW = "low"
    HIGH = "high"


def _even(value: int) -> str | None:
    return None if value % 2 == 0 else f"must be even, got {value}"


@dataclass(frozen=True)
class Inner:
    """A nested table."""

    size: int = ranged(4, lo=1, hi=8)
    colour: Literal["red", "green"] = "red"


@dataclass(frozen=True)
class Names:
    """A table that may be written as a bare list."""

    names: tuple[str, ...] = ()
    file: str = ""


@dataclass(frozen=True, kw_only=True)
class Box:
    """One kind of shape."""

    width: float = ranged(1.0, lo=0.0, hi=10.0)


@dataclass(frozen=True, kw_only=True)
class Circle:
    """Another kind of shape."""

    radius: float = 1.0

    def __post_init__(self) -> None:
        if self.radius <= 0:
            raise ModelError(f"radius must be > 0, got {self.radius}")


SHAPES: dict[str, type[Any]] = {"box": Box, "circle": Circle}


@dataclass(frozen=True, kw_only=True)
class Thing:
    """Every kind of field build knows."""

    name: str
    count: int = checked(_even, default=2)
    ratio: float = ranged(0.5, lo=0.0, hi=1.0)
    rate: float = ranged(1.0, lo=0.0, lo_open=True)
    limit: int = ranged(1, lo=1)
    scale: float = 1.0
    level: Level = Level.LOW
    on: bool = False
    mode: str = one_of("fast", "fast", "slow")
    maybe: float | None = None
    band: tuple[float, float] = ranged((0.2, 0.6), lo=0.0, hi=1.0)
    tags: tuple[str, ...] = ()
    inner: Inner = Inner()
    facts: Mapping[str, Any] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=dict)
    shape: Variant = field(metadata=variant(lambda: SHAPES))
    names: Names | None = field(default=None, metadata=shorthand("names"))


def _thing(where: str = "thing.toml", **raw: Any) -> Thing:
    return build(Thing, {"name": "t", "shape": {"type": "box"}, **raw}, where, path="things.a")


def _refused(fragment: str, **raw: Any) -> str:
    with pytest.raises(ModelError, match=re.escape(fragment)) as info:
        _thing(**raw)
    return str(info.value)


def test_every_kind_of_field() -> None:
    thing = _thing(
        count=4,
        ratio=1,
        on=True,
        mode="slow",
        level="high",
        maybe=3,
        band=[0.1, 0.9],
        tags=["a", "b"],
        inner={"size": 8, "colour": "green"},
        facts={"nested": {"kept": [1, 2]}},
        weights={"a": 1, "b": 0.5},
        shape={"type": "circle", "radius": 2},
        names=["x", "y"],
    )
    assert thing.count == 4 and thing.ratio == 1.0 and type(thing.ratio) is float
    assert (thing.on, thing.mode, thing.maybe) == (True, "slow", 3.0)
    assert thing.level is Level.HIGH
    assert thing.band == (0.1, 0.9) and thing.tags == ("a", "b")
    assert thing.inner == Inner(8, "green")
    assert thing.facts == {"nested": {"kept": [1, 2]}}
    assert thing.weights == {"a": 1.0, "b": 0.5} and type(thing.weights["a"]) is float
    assert thing.shape == Variant("circle", Circle(radius=2.0))
    assert thing.names == Names(names=("x", "y"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        thing.count = 6  # type: ignore[misc]


def test_defaults_fill_what_is_not_written() -> None:
    thing = _thing()
    assert (thing.count, thing.inner, thing.maybe, thing.names) == (2, Inner(), None, None)
    assert thing.shape == Variant("box", Box())


def test_unknown_key_names_its_path_the_allowed_keys_and_the_closest() -> None:
    message = _refused(
        "thing.toml: things.a.inner.colr: unknown key; did you mean 'colour'?",
        inner={"colr": "red"},
    )
    assert message.endswith("(allowed: colour, size)")
    message = _refused("things.a.zzz: unknown key (allowed: band, count,", zzz=1)
    assert "did you mean" not in message


def test_missing_required_key() -> None:
    with pytest.raises(ModelError, match=r"^f: things\.a\.name: required key is missing$"):
        build(Thing, {"shape": {"type": "box"}}, "f", path="things.a")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"name": 5}, "things.a.name must be a string, got 5 (int)"),
        ({"count": 2.0}, "things.a.count must be an integer, got 2.0 (float)"),
        ({"count": True}, "things.a.count must be an integer, got True (bool)"),
        ({"scale": "1.5"}, "things.a.scale must be a number, got '1.5' (str)"),
        ({"on": 1}, "things.a.on must be true or false, got 1 (int)"),
        ({"band": 0.5}, "things.a.band must be a list, got 0.5 (float)"),
        ({"band": [0.1]}, "things.a.band must be a list of 2 items, got [0.1] (list)"),
        ({"tags": ["a", 2]}, "things.a.tags[1] must be a string, got 2 (int)"),
        ({"inner": 3}, "things.a.inner must be a table (an object), got 3 (int)"),
        ({"facts": [1]}, "things.a.facts must be a table (an object), got [1] (list)"),
        ({"weights": {"a": "x"}}, "things.a.weights.a must be a number, got 'x' (str)"),
        (
            {"inner": {"colour": "blue"}},
            "things.a.inner.colour must be one of red, green, got 'blue'",
        ),
    ],
)
def test_wrong_types_say_expected_and_got(raw: dict[str, Any], fragment: str) -> None:
    _refused(fragment, **raw)


def test_long_values_are_shortened_in_messages() -> None:
    message = _refused("things.a.name must be a string, got [0, 0,", name=[0] * 100)
    assert "... (list)" in message and len(message) < 200


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"ratio": 1.5}, "things.a.ratio must be a number in [0, 1], got 1.5"),
        ({"ratio": float("nan")}, "things.a.ratio must be a number in [0, 1], got nan"),
        ({"band": [0.1, 2]}, "things.a.band[1] must be a number in [0, 1], got 2.0"),
        ({"inner": {"size": 0}}, "things.a.inner.size must be a number in [1, 8], got 0"),
        ({"scale": float("inf")}, "things.a.scale must be a finite number, got inf"),
        ({"rate": 0}, "things.a.rate must be a finite number > 0, got 0.0"),
        ({"rate": float("inf")}, "things.a.rate must be a finite number > 0, got inf"),
        ({"limit": 0}, "things.a.limit must be a number >= 1, got 0"),
        (
            {"level": "hgh"},
            "things.a.level must be one of low, high, got 'hgh'; did you mean 'high'?",
        ),
        ({"level": 1}, "things.a.level must be one of low, high, got 1"),
        (
            {"mode": "slw"},
            "things.a.mode must be one of fast, slow, got 'slw'; did you mean 'slow'?",
        ),
        ({"count": 3}, "things.a.count must be even, got 3"),
    ],
)
def test_ranges_choices_and_checks(raw: dict[str, Any], fragment: str) -> None:
    _refused(fragment, **raw)


def test_variants_are_chosen_by_their_type() -> None:
    _refused(
        "things.a.shape.type must be one of box, circle, got 'circel'; did you mean 'circle'?",
        shape={"type": "circel"},
    )
    _refused(
        "things.a.shape.type: required key is missing (one of: box, circle)", shape={"width": 1}
    )
    _refused(
        "things.a.shape.radius: unknown key (allowed: width)", shape={"type": "box", "radius": 1}
    )
    _refused(
        "things.a.shape must be a table (an object) with a 'type' key, got 'box' (str)", shape="box"
    )


def test_a_dataclass_refusing_itself_is_reported_at_its_path() -> None:
    _refused(
        "thing.toml: things.a.shape: radius must be > 0, got -1.0",
        shape={"type": "circle", "radius": -1},
    )


def test_build_variant_alone_and_the_error_class() -> None:
    built = build_variant(
        SHAPES, {"kind": "circle", "radius": 3}, "cams.toml", path="camera.source", key="kind"
    )
    assert built == Variant("circle", Circle(radius=3.0))
    with pytest.raises(
        ConfigError, match=r"^cams\.toml: camera\.source\.kind must be one of box, circle"
    ):
        build_variant(
            SHAPES,
            {"kind": "cube"},
            "cams.toml",
            path="camera.source",
            key="kind",
            error=ConfigError,
        )
    with pytest.raises(ConfigError, match=r"^things\.a\.shape: radius must be > 0"):
        build(
            Thing,
            {"name": "t", "shape": {"type": "circle", "radius": 0}},
            "",
            path="things.a",
            error=ConfigError,
        )


def test_registry_is_read_at_build_time() -> None:
    SHAPES["square"] = Box
    try:
        assert _thing(shape={"type": "square"}).shape.type == "square"
    finally:
        del SHAPES["square"]


@pytest.mark.parametrize(
    ("text", "want"),
    [("1", True), ("TRUE", True), ("yes", True), ("0", False), ("false", False), ("No", False)],
)
def test_strings_are_parsed_when_asked(text: str, want: bool) -> None:
    raw = {"name": "t", "shape": {"type": "box"}, "on": text, "count": " +4", "ratio": "0.25"}
    thing = build(Thing, raw, "", strings=True)
    assert (thing.on, thing.count, thing.ratio) == (want, 4, 0.25)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"on": "maybe"}, "on must be true or false, got 'maybe' (str)"),
        ({"count": "16.0"}, "count must be an integer, got '16.0' (str)"),
        ({"count": "0x10"}, "count must be an integer, got '0x10' (str)"),
        ({"count": "--4"}, "count must be an integer, got '--4' (str)"),
        ({"ratio": "nan"}, "ratio must be a number in [0, 1], got nan"),
    ],
)
def test_strings_that_do_not_parse(raw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        build(
            Thing,
            {"name": "t", "shape": {"type": "box"}, **raw},
            "",
            strings=True,
            error=ConfigError,
        )


def test_dump_leaves_out_defaults_and_reads_back_equal() -> None:
    thing = _thing(
        count=6,
        level="high",
        band=[0.0, 1.0],
        inner={"size": 5},
        facts={"a": [1]},
        shape={"type": "circle", "radius": 2.5},
        names=["x"],
    )
    data = dump(thing)
    assert data == {
        "name": "t",
        "count": 6,
        "level": "high",
        "band": [0.0, 1.0],
        "inner": {"size": 5},
        "facts": {"a": [1]},
        "shape": {"type": "circle", "radius": 2.5},
        "names": {"names": ["x"]},
    }
    assert type(data["level"]) is str
    assert build(Thing, data, "") == thing


def test_only_optional_unions_are_declarable() -> None:
    @dataclass(frozen=True)
    class Odd:
        value: int | str = 0

    with pytest.raises(TypeError, match=re.escape("only `X | None` unions")):
        build(Odd, {"value": 1}, "")


@dataclass(frozen=True, kw_only=True)
class Made:
    """A declared dataclass that checks itself when made in code."""

    ratio: float = ranged(0.5, lo=0.0, hi=1.0)
    rate: float = ranged(1.0, lo=0.0, lo_open=True)
    band: tuple[float, ...] = ranged((0.5,), lo=0.0, hi=1.0)
    mode: str = one_of("fast", "fast", "slow")
    count: int = checked(_even, default=2)
    level: Level = Level.LOW

    def __post_init__(self) -> None:
        validate(self, "made.toml", path="made", error=ConfigError)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ratio": 1.5}, "made.toml: made.ratio must be a number in [0, 1], got 1.5"),
        ({"rate": 0.0}, "made.toml: made.rate must be a finite number > 0, got 0.0"),
        ({"rate": float("nan")}, "made.toml: made.rate must be a finite number > 0, got nan"),
        ({"band": (0.5, -1.0)}, "made.toml: made.band[1] must be a number in [0, 1], got -1.0"),
        (
            {"mode": "slw"},
            "made.toml: made.mode must be one of fast, slow, got 'slw'; did you mean 'slow'?",
        ),
        ({"count": 3}, "made.toml: made.count must be even, got 3"),
    ],
)
def test_validate_holds_a_dataclass_made_in_code_to_its_metadata(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        Made(**fields)


def test_validate_passes_what_fits_and_build_reports_first() -> None:
    made = Made(ratio=1, rate=2.0, band=(0.0, 1.0), mode="slow", count=4, level=Level.HIGH)
    assert build(Made, dump(made), "") == made
    with pytest.raises(ModelError, match=r"^f: m\.ratio must be a number in \[0, 1\], got 2\.0$"):
        build(Made, {"ratio": 2}, "f", path="m")
