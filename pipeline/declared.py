"""Declarations: frozen dataclasses built from mappings (TOML, JSON), checked on the way.

A declared type is a frozen dataclass whose annotations say what each key may hold:
``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, an ``Enum`` (from a member's
value, e.g. a ``StrEnum``'s string), ``X | None``, ``tuple[X, ...]`` or
``tuple[X, Y]`` (from lists), a nested declared dataclass (from a table),
``Mapping[str, X]`` (a table of X; ``Mapping[str, Any]`` is taken as it is), and
:class:`Variant` (a table whose ``type`` key picks a dataclass from a registry). Field
metadata made by :func:`ranged`, :func:`one_of`, :func:`checked` (fields) and
:func:`variant`, :func:`shorthand` (metadata for ``field``) add ranges, choices, checks,
registries and a list form.

:func:`build` refuses what does not fit with one error that names the key's full
dotted path and what would be right: an unknown key (with the allowed keys and a
"did you mean"), a missing required key, a wrong type (expected and got), a value
out of range or not among the choices. The caller chooses the exception class
(``ModelError`` for manifests, ``ConfigError`` for settings). An error raised by a
dataclass's own ``__post_init__`` (``ValueError`` or any ``HybridfleetError``) comes out
as that class too, prefixed with the table's path. :func:`dump` is the inverse.

The field metadata are the one statement of a value's rules: :func:`validate` checks a
dataclass made in code (not built) against the same ranges, choices and checks, for a
``__post_init__`` to call; its types are the type checker's to check.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, NoReturn, TypeVar

from schemas.errors import HybridfleetError, ModelError

__all__ = [
    "Variant",
    "build",
    "build_variant",
    "checked",
    "dump",
    "one_of",
    "ranged",
    "shorthand",
    "validate",
    "variant",
]

T = TypeVar("T")
# A check returns what is wrong ("must be ..."), or None when the value is fine.
Check = Callable[[Any], str | None]
Registry = Mapping[str, type[Any]]

_LO, _HI, _LO_OPEN, _CHOICES, _CHECK = "lo", "hi", "lo_open", "choices", "check"
_VARIANTS, _KEY, _SHORTHAND = "variants", "variant_key", "shorthand"
_WORDS: Final = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_TRUE, _FALSE = frozenset({"1", "true", "yes"}), frozenset({"0", "false", "no"})
_SHOWN_CHARS: Final = 80
_INTEGER: Final = re.compile(r"[+-]?[0-9]+")


@dataclasses.dataclass(frozen=True, slots=True)
class Variant:
    """A table whose ``type`` key chose its dataclass: the name and the built ``params``."""

    type: str
    params: Any


def ranged(
    default: Any = dataclasses.MISSING, *, lo: float, hi: float = math.inf, lo_open: bool = False
) -> Any:
    """A finite number (or every number of a tuple) in [lo, hi], or (lo, hi] with
    ``lo_open``; no ``hi``: no upper bound; no default: required."""
    return dataclasses.field(default=default, metadata={_LO: lo, _HI: hi, _LO_OPEN: lo_open})


def one_of(default: Any, *choices: str) -> Any:
    """A string (or every string of a tuple) among ``choices``."""
    return dataclasses.field(default=default, metadata={_CHOICES: choices})


def checked(check: Check, default: Any = dataclasses.MISSING) -> Any:
    """A value that must also pass ``check``; no default: required."""
    return dataclasses.field(default=default, metadata={_CHECK: check})


def variant(registry: Callable[[], Registry], key: str = "type") -> dict[str, Any]:
    """Field metadata of a :class:`Variant`: ``key`` names an entry of ``registry()``
    (called at build time, so entries registered later count). Use as
    ``field(metadata=variant(...))``."""
    return {_VARIANTS: registry, _KEY: key}


def shorthand(name: str) -> dict[str, Any]:
    """Field metadata of a nested dataclass that may also be written as a bare list:
    ``[...]`` stands for ``{name = [...]}``. Use as ``field(metadata=shorthand(...))``."""
    return {_SHORTHAND: name}


def build(
    cls: type[T],
    raw: Mapping[str, Any],
    where: str,
    *,
    path: str = "",
    error: type[HybridfleetError] = ModelError,
    strings: bool = False,
) -> T:
    """The ``cls`` that ``raw`` declares, or ``error`` naming the key and what is right.

    ``where`` (a file, or "" for none) and ``path`` (the dotted key of ``raw`` itself)
    start every message. With ``strings``, a string is also read as a bool ("true",
    "yes", "1", ...), an int or a float, as environment variables are.
    """
    return _Builder(where, error, strings).dataclass(cls, raw, path)


def build_variant(
    registry: Registry,
    raw: Mapping[str, Any],
    where: str,
    *,
    path: str = "",
    key: str = "type",
    error: type[HybridfleetError] = ModelError,
) -> Variant:
    """The :class:`Variant` that ``raw[key]`` names in ``registry``, built from the other keys."""
    return _Builder(where, error, False).variant(registry, key, raw, path)


def validate(
    value: Any,
    where: str = "",
    *,
    path: str = "",
    error: type[HybridfleetError] = ModelError,
) -> None:
    """Check the fields of ``value``, a declared dataclass made in code, against their
    metadata (ranges, choices, checks) as :func:`build` does; ``error`` as it words it.

    For a ``__post_init__``; the types are not checked (that is the type checker's work).
    """
    builder = _Builder(where, error, False)
    prefix = f"{path}." if path else ""
    for f in dataclasses.fields(value):
        builder.rules(f.metadata, getattr(value, f.name), f"{prefix}{f.name}")


def dump(value: Any) -> Any:
    """A declared value as JSON-ready data that :func:`build` reads back to an equal value.

    Fields at their default are left out; tuples become lists, mappings dicts.
    """
    if isinstance(value, Variant):
        raise TypeError("dump a Variant through the dataclass that holds it")
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item == _default(f):
                continue
            if isinstance(item, Variant):
                out[f.name] = {f.metadata[_KEY]: item.type, **dump(item.params)}
            else:
                out[f.name] = dump(item)
        return out
    if isinstance(value, tuple | list):
        return [dump(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): dump(v) for k, v in value.items()}
    return value


def _default(f: dataclasses.Field[Any]) -> Any:
    """The field's default value, or MISSING for a required field."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _shown(value: Any) -> str:
    """``value`` for a message: its repr (shortened) and its type."""
    text = repr(value)
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    return f"{text} ({type(value).__name__})"


def _bound(number: float) -> str:
    """A bound as people write it: 4096, 0.5."""
    return str(int(number)) if float(number).is_integer() else repr(float(number))


def _interval(lo: float, hi: float, lo_open: bool, value: Any) -> str:
    """What a ranged number must be: "a number in [0, 1]", "(0, 1]", "a number >= 1",
    "a finite number > 0" (finite said for a float when there is no upper bound)."""
    if math.isinf(hi):
        kind = "a finite number" if isinstance(value, float) else "a number"
        return f"{kind} {'>' if lo_open else '>='} {_bound(lo)}"
    return f"a number in {'(' if lo_open else '['}{_bound(lo)}, {_bound(hi)}]"


def _suggest(word: object, allowed: Any) -> str:
    """The "; did you mean 'x'?" hint for the closest allowed word, or "" when none is close."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [str(a) for a in allowed], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Builder:
    """One build: where it reads, the exception it raises, whether strings are parsed."""

    def __init__(self, where: str, error: type[HybridfleetError], strings: bool) -> None:
        self.where = where
        self.error = error
        self.strings = strings

    def fail(self, path: str, problem: str) -> NoReturn:
        """Raise the caller's error: ``where: path problem``."""
        at = f"{self.where}: " if self.where else ""
        raise self.error(f"{at}{path}{problem}" if path else at + problem.lstrip(" :"))

    def dataclass(self, cls: type[T], raw: Any, path: str) -> T:
        """``cls`` from the table ``raw`` at ``path``."""
        if not isinstance(raw, Mapping):
            self.fail(path, f" must be a table (an object), got {_shown(raw)}")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        prefix = f"{path}." if path else ""
        for key in raw:
            if key not in fields:
                allowed = ", ".join(sorted(fields))
                self.fail(
                    f"{prefix}{key}",
                    f": unknown key{_suggest(key, fields)} (allowed: {allowed})",
                )
        for name, f in fields.items():
            if _default(f) is dataclasses.MISSING and f.init and name not in raw:
                self.fail(f"{prefix}{name}", ": required key is missing")
        hints = typing.get_type_hints(cls)
        kwargs = {
            name: self.field(fields[name], hints[name], value, f"{prefix}{name}")
            for name, value in raw.items()
        }
        try:
            return cls(**kwargs)
        except (HybridfleetError, ValueError) as exc:
            self.fail(path, f": {exc}")

    def field(self, f: dataclasses.Field[Any], hint: Any, value: Any, path: str) -> Any:
        """One field's value: the shorthand and variant forms, then the type and the checks."""
        meta = f.metadata
        if _VARIANTS in meta:
            return self.variant(meta[_VARIANTS](), meta[_KEY], value, path)
        if _SHORTHAND in meta and isinstance(value, list | tuple):
            value = {meta[_SHORTHAND]: value}
        built = self.value(hint, value, path)
        self.rules(meta, built, path)
        return built

    def rules(self, meta: Mapping[str, Any], value: Any, path: str) -> None:
        """The field's metadata, for a value of its type: the range and choices of the
        value (or of each item of a tuple), then the check."""
        items = value if isinstance(value, tuple) else (value,)
        for index, item in enumerate(items):
            self.limits(meta, item, f"{path}[{index}]" if isinstance(value, tuple) else path)
        if _CHECK in meta:
            problem = meta[_CHECK](value)
            if problem is not None:
                self.fail(path, f" {problem}")

    def limits(self, meta: Mapping[str, Any], value: Any, path: str) -> None:
        """The range and the choices of the field's metadata, for one value; a float is
        always finite."""
        if value is None:
            return
        if _LO in meta:
            lo, hi, lo_open = meta[_LO], meta[_HI], meta.get(_LO_OPEN, False)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and lo <= value <= hi) or (
                lo_open and value == lo
            ):
                self.fail(path, f" must be {_interval(lo, hi, lo_open, value)}, got {value!r}")
        elif isinstance(value, float) and not math.isfinite(value):
            self.fail(path, f" must be a finite number, got {value!r}")
        choices = meta.get(_CHOICES)
        if choices and value not in choices:
            listed = ", ".join(choices)
            self.fail(path, f" must be one of {listed}, got {value!r}{_suggest(value, choices)}")

    def variant(self, registry: Registry, key: str, raw: Any, path: str) -> Variant:
        """The registry entry that ``raw[key]`` names, built from ``raw``'s other keys."""
        if not isinstance(raw, Mapping):
            self.fail(path, f" must be a table (an object) with a {key!r} key, got {_shown(raw)}")
        prefix = f"{path}." if path else ""
        known = ", ".join(sorted(registry)) or "(none registered)"
        if key not in raw:
            self.fail(f"{prefix}{key}", f": required key is missing (one of: {known})")
        name = raw[key]
        if not isinstance(name, str) or name not in registry:
            close = _suggest(name, registry)
            self.fail(f"{prefix}{key}", f" must be one of {known}, got {name!r}{close}")
        rest = {k: v for k, v in raw.items() if k != key}
        return Variant(name, self.dataclass(registry[name], rest, path))

    def value(self, hint: Any, value: Any, path: str) -> Any:
        """``value`` as the annotation ``hint`` says, or the caller's error."""
        origin = typing.get_origin(hint)
        if origin is types.UnionType or origin is typing.Union:
            others = [h for h in typing.get_args(hint) if h is not type(None)]
            if len(others) != 1:
                raise TypeError(f"{path}: only `X | None` unions are declarable, not {hint}")
            return None if value is None else self.value(others[0], value, path)
        if origin is Literal:
            allowed = typing.get_args(hint)
            if value not in allowed:
                listed = ", ".join(str(a) for a in allowed)
                close = _suggest(value, allowed)
                self.fail(path, f" must be one of {listed}, got {value!r}{close}")
            return value
        if origin is tuple:
            return self.tuple(typing.get_args(hint), value, path)
        if origin is Mapping:
            return self.mapping(typing.get_args(hint)[1], value, path)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self.dataclass(hint, value, path)
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return self.enum(hint, value, path)
        if hint in _WORDS:
            return self.scalar(hint, value, path)
        raise TypeError(f"{path}: {hint!r} is not a declarable type")

    def enum(self, kind: type[enum.Enum], value: Any, path: str) -> enum.Enum:
        """The member of ``kind`` whose value ``value`` is (or the member itself)."""
        if isinstance(value, kind):
            return value
        for member in kind:
            if type(member.value) is type(value) and member.value == value:
                return member
        allowed = [member.value for member in kind]
        listed = ", ".join(str(a) for a in allowed)
        self.fail(path, f" must be one of {listed}, got {value!r}{_suggest(value, allowed)}")

    def tuple(self, args: tuple[Any, ...], value: Any, path: str) -> tuple[Any, ...]:
        """A tuple from a list: ``tuple[X, ...]`` any length, ``tuple[X, Y]`` exactly two."""
        if not isinstance(value, list | tuple):
            self.fail(path, f" must be a list, got {_shown(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            kinds = [args[0]] * len(value)
        else:
            kinds = list(args)
            if len(value) != len(kinds):
                self.fail(path, f" must be a list of {len(kinds)} items, got {_shown(value)}")
        pairs = enumerate(zip(kinds, value, strict=True))
        return tuple(self.value(k, v, f"{path}[{i}]") for i, (k, v) in pairs)

    def mapping(self, kind: Any, value: Any, path: str) -> Mapping[str, Any]:
        """A read-only table; each value built as ``kind`` unless ``kind`` is Any."""
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            self.fail(path, f" must be a table (an object), got {_shown(value)}")
        if kind is Any:
            return MappingProxyType(dict(value))
        return MappingProxyType({k: self.value(kind, v, f"{path}.{k}") for k, v in value.items()})

    def scalar(self, kind: type[Any], value: Any, path: str) -> Any:
        """A bool, int, float or str; with ``strings``, parsed from a string."""
        text = value.strip().lower() if self.strings and isinstance(value, str) else None
        if kind is bool:
            if isinstance(value, bool):
                return value
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if text is not None and _INTEGER.fullmatch(text):
                return int(text)
        elif kind is float:
            number = _float(value, text)
            if number is not None:
                return number
        elif isinstance(value, str):
            return value
        self.fail(path, f" must be {_WORDS[kind]}, got {_shown(value)}")


def _float(value: Any, text: str | None) -> float | None:
    """``value`` as a float (an int is one; ``text`` is the string form to parse), or None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None
