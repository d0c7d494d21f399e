"""Writing the tuned threshold into a TOML config: a tiny writer and an in-place editor.

``dump_toml`` (pure) writes the flat ``[section] key = value`` form; ``update_config``
sets ``[edge] default_threshold`` and ``[edge] confidence_signal`` in a config file,
keeping its comments and layout where it can.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.inference.calibration import SETTING_NAME
from pipeline.planning.curves import TuningError

__all__ = ["dump_toml", "update_config"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes are all valid in a TOML basic string; DEL must be escaped too.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    raise TuningError(f"{where}: cannot write a {type(value).__name__} back to TOML")


def dump_toml(data: Mapping[str, Any]) -> str:
    """TOML text for top-level keys and one level of ``[section]`` tables."""
    lines: list[str] = []
    for key, value in data.items():
        if not isinstance(value, Mapping):
            lines.append(f"{_toml_key(key)} = {_toml_value(value, key)}")
    for name, table in data.items():
        if not isinstance(table, Mapping):
            continue
        if lines:
            lines.append("")
        lines.append(f"[{_toml_key(name)}]")
        for key, value in table.items():
            where = f"{name}.{key}"
            if isinstance(value, Mapping):
                raise TuningError(f"{where}: nested tables are not supported here")
            lines.append(f"{_toml_key(key)} = {_toml_value(value, where)}")
    return "\n".join(lines) + "\n"


def _edit_section(text: str, section: str, updates: Mapping[str, Any]) -> str:
    """``text`` with ``key = value`` lines of ``[section]`` set, the rest left as it is.

    Replaces a key's line where it is, inserts missing keys after the section's header,
    and appends the section if the file has none. Only for plain ``[section]`` tables;
    the caller checks the result by parsing it.
    """
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    header = re.compile(rf"^\s*\[\s*{re.escape(section)}\s*\]\s*(#.*)?$")
    any_header = re.compile(r"^\s*\[")
    starts = [i for i, line in enumerate(lines) if header.match(line)]
    rendered = {key: f"{_toml_key(key)} = {_toml_value(v, key)}\n" for key, v in updates.items()}
    if len(starts) != 1:
        block = "".join(rendered.values())
        return "".join(lines) + ("\n" if lines else "") + f"[{_toml_key(section)}]\n{block}"
    start = starts[0]
    end = next((i for i in range(start + 1, len(lines)) if any_header.match(lines[i])), len(lines))
    missing = dict(rendered)
    for i in range(start + 1, end):
        for key in list(missing):
            if re.match(rf"^\s*{re.escape(_toml_key(key))}\s*=", lines[i]):
                lines[i] = missing.pop(key)
    lines[start + 1 : start + 1] = list(missing.values())
    return "".join(lines)


def update_config(path: Path | str, threshold: float, signal: str) -> list[str]:
    """Set ``[edge] default_threshold`` and ``[edge] confidence_signal``.

    Other sections, keys, comments and layout are kept: the key's line is replaced in
    place (or added under ``[edge]``). If that edit does not parse back to the same
    settings (an unusual layout such as dotted keys), the file is rewritten from its
    parsed content with :func:`dump_toml`, which keeps every setting but not comments.
    The result must load with ``pipeline.config.load_settings`` before it replaces the
    file. Returns what was written.
    """
    from pipeline.config import load_settings

    target = Path(path)
    edge_updates: dict[str, Any] = {"default_threshold": float(threshold), SETTING_NAME: signal}
    original = ""
    if target.exists():
        try:
            original = target.read_text(encoding="utf-8")
            data = tomllib.loads(original)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise TuningError(f"cannot read {target}: {exc}") from exc
    else:
        data = {}
    edge = data.get("edge", {})
    if not isinstance(edge, dict):
        raise TuningError(f"{target}: edge is not a [edge] table")
    wanted = {**data, "edge": {**edge, **edge_updates}}
    text = _edit_section(original, "edge", edge_updates)
    try:
        kept = tomllib.loads(text) == wanted
    except tomllib.TOMLDecodeError:
        kept = False
    written = [f"[edge] {key} = {_toml_value(value, key)}" for key, value in edge_updates.items()]
    if not kept:
        text = dump_toml(wanted)
        if "#" in original:
            written.append("(the file was rewritten from its settings: comments were not kept)")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        load_settings(tmp, env={})  # refuse to leave a config the workers would refuse
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return written
