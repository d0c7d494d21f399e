"""A model's class names: where its manifest entry says they are, and reading them.

The entry's ``labels`` is one of:

* a list of names, in the order of the model's output columns:
  ``labels = ["person", "bicycle"]``;
* ``{file = "labels.txt"}``: a UTF-8 file next to the manifest (or in the bundle
  folder), one name per line; a line's end (``\\n`` or ``\\r\\n``) is not part of the
  name, an empty line is refused;
* ``{metadata = "KEY"}``: the ONNX file's metadata property KEY, read when the model
  is loaded. For every model but a CTC text recogniser the value is a Python literal,
  read with ``ast.literal_eval`` (never ``eval``): a dict of index to name, as
  Ultralytics writes ``names`` (``"{0: 'person', 1: 'bicycle'}"``, indexes 0..n-1), or
  a list of names. For a CTC text recogniser it is the characters joined by newlines,
  as PaddleOCR writes ``character``.

For a CTC text recogniser the names are the dictionary's characters, whichever the
source, and the resolved labels add the blank class and the space:
``[*characters, " "]`` with ``CTC_BLANK`` inserted at the decoder's ``blank`` index
(PaddleOCR: ``[CTC_BLANK, *characters, " "]``, blank 0 and the space it appends with
``use_space_char``), one per output column.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from schemas.errors import ModelError

__all__ = ["CTC_BLANK", "Labels", "resolve_labels"]

CTC_BLANK: Final = "<blank>"


@dataclass(frozen=True, slots=True)
class Labels:
    """Where the class names are: exactly one of ``names``, ``file``, ``metadata``."""

    names: tuple[str, ...] = ()
    file: str = ""
    metadata: str = ""

    def __post_init__(self) -> None:
        given = [key for key in ("names", "file", "metadata") if getattr(self, key)]
        if len(given) != 1:
            raise ModelError(
                'give exactly one of: a list of names, {file = "labels.txt"} or '
                f'{{metadata = "names"}}; got {given or "none"}'
            )
        if any(not name for name in self.names):
            raise ModelError("names must not be empty strings")
        if self.file and (Path(self.file).is_absolute() or ".." in Path(self.file).parts):
            raise ModelError(f"file must be relative to the manifest's folder, got {self.file!r}")


def resolve_labels(
    labels: Labels,
    folder: Path,
    metadata: Mapping[str, str],
    where: str,
    *,
    ctc_blank: int | None = None,
) -> tuple[str, ...]:
    """The model's labels, one per output column (see the module's docstring).

    ``folder`` is the manifest's (or bundle's) folder, ``metadata`` the ONNX file's
    metadata properties, ``ctc_blank`` the blank's index for a CTC recogniser (None for
    any other model). ModelError, prefixed by ``where``, says what is wrong.
    """
    ctc = ctc_blank is not None
    if labels.names:
        names = labels.names
    elif labels.file:
        names = _lines(_read(folder / labels.file, where), f"{where}: labels file {labels.file}")
    else:
        key = labels.metadata
        if key not in metadata:
            raise ModelError(
                f"{where}: labels.metadata: the model file has no metadata {key!r}; "
                f"it has {sorted(metadata)}"
            )
        what = f"{where}: metadata {key!r} of the model file"
        names = _lines(metadata[key], what) if ctc else _literal(metadata[key], what)
    if ctc_blank is None:
        return names
    classes = [*names, " "]
    if ctc_blank > len(classes):
        raise ModelError(f"{where}: decoder.blank is {ctc_blank}, beyond the {len(classes)} labels")
    classes.insert(ctc_blank, CTC_BLANK)
    return tuple(classes)


def _read(path: Path, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{where}: labels.file: cannot read {path}: {exc}") from None


def _lines(text: str, what: str) -> tuple[str, ...]:
    """One name per line; the final line end is optional, empty lines are refused."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    names = tuple(line.removesuffix("\r") for line in lines)
    empty = [i + 1 for i, name in enumerate(names) if not name]
    if not names or empty:
        raise ModelError(f"{what}: needs one name per line; empty lines: {empty or 'all'}")
    return names


def _literal(text: str, what: str) -> tuple[str, ...]:
    """Names from a Python literal: {0: 'a', 1: 'b'} or ['a', 'b']."""
    try:
        value: Any = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ModelError(f"{what}: is not a Python literal: {text[:60]!r}") from None
    if isinstance(value, dict):
        if set(value) != set(range(len(value))) or any(isinstance(k, bool) for k in value):
            raise ModelError(f"{what}: the dict's keys must be the indexes 0..{len(value) - 1}")
        value = [value[i] for i in range(len(value))]
    if not isinstance(value, list | tuple) or not value:
        raise ModelError(f"{what}: must be a dict {{index: name}} or a list of names")
    if not all(isinstance(name, str) and name for name in value):
        raise ModelError(f"{what}: every name must be a non-empty string")
    return tuple(value)
