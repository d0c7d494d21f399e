"""Options dataclasses from parsed command lines: one mapping for every command.

Most of a command's flags are named after the fields of the options it builds
(``--site``, ``--deadline-ms``), so ``options_from`` copies each field the arguments
carry, and the command passes only what it names otherwise or computes.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

__all__ = ["options_from"]

T = TypeVar("T")


def options_from(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """``cls`` (a dataclass) with each field that ``args`` carries, unless ``given``."""
    parsed = vars(args)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    values = {name: parsed[name] for name in names if name in parsed and name not in given}
    return cls(**values, **given)
