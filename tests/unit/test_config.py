"""pipeline.config: defaults, TOML file, env overrides, and every way a setting is refused.

Every call passes ``env`` explicitly so the developer's own environment cannot leak in;
one test checks that ``os.environ`` is the default source.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pipeline.config import (
    CloudSettings,
    EdgeSettings,
    NatsSettings,
    Settings,
    StreamSettings,
    load_settings,
)
from schemas.errors import ConfigError, HybridfleetError
from schemas.limits import DEFAULT_MAX_BYTES

SECTIONS = {
    "nats": NatsSettings,
    "stream": StreamSettings,
    "edge": EdgeSettings,
    "cloud": CloudSettings,
}


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hybridfleet.toml"
    path.write_text(text)
    return path


def _refused(
    fragment: str, path: Path | str | None = None, env: dict[str, str] | None = None
) -> str:
    with pytest.raises(ConfigError, match=re.escape(fragment)) as info:
        load_settings(path, env={} if env is None else env)
    return str(info.value)


# ------------------------------------------------------------------ sources


def test_defaults_without_file_or_env() -> None:
    s = load_settings(None, env={})
    assert s == Settings()
    assert s.nats.url == "nats://127.0.0.1:4222"
    assert s.nats.connect_timeout_s == 5.0
    assert s.stream.max_bytes == 1 << 30
    assert s.stream.replicas == 1
    assert s.stream.duplicate_window_s == 120.0
    assert s.edge.site == "site1"
    assert s.edge.worker_id == "edge-1"
    assert s.edge.max_batch_size == 32
    assert s.edge.default_threshold == 0.9
    assert s.edge.max_message_bytes == DEFAULT_MAX_BYTES
    assert s.edge.model_manifest == ""
    assert s.cloud.worker_id == "cloud-1"
    assert s.cloud.max_deliver == 5
    assert s.cloud.ack_wait_s == 30.0


def test_settings_are_frozen() -> None:
    s = load_settings(None, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.edge.max_batch_size = 1  # type: ignore[misc]


def test_toml_values_applied(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        """
[nats]
url = "nats://10.0.0.1:4333"

[stream]
replicas = 3
max_age_s = 3600

[edge]
site = "north-7"
max_batch_size = 8
default_threshold = 0.75
latency_target_ms = 15.5

[cloud]
worker_id = "gpu_2"
fetch_timeout_s = 1.25
""",
    )
    s = load_settings(path, env={})
    assert s.nats.url == "nats://10.0.0.1:4333"
    assert s.stream.replicas == 3
    assert s.stream.max_age_s == 3600.0 and type(s.stream.max_age_s) is float  # int -> float
    assert s.edge.site == "north-7"
    assert s.edge.max_batch_size == 8
    assert s.edge.default_threshold == 0.75
    assert s.edge.latency_target_ms == 15.5
    assert s.cloud.worker_id == "gpu_2"
    assert s.cloud.fetch_timeout_s == 1.25
    # untouched keys keep their defaults
    assert s.edge.queue_capacity == EdgeSettings().queue_capacity
    assert s.nats.connect_timeout_s == NatsSettings().connect_timeout_s


def test_path_may_be_a_string(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[edge]\nmax_batch_size = 4\n")
    assert load_settings(str(path), env={}).edge.max_batch_size == 4


def test_env_values_applied_and_parsed() -> None:
    env = {
        "HYBRIDFLEET_EDGE_MAX_BATCH_SIZE": "16",
        "HYBRIDFLEET_EDGE_DEFAULT_THRESHOLD": "0.5",
        "HYBRIDFLEET_NATS_URL": "nats://h:1",
        "HYBRIDFLEET_CLOUD_WORKER_ID": "c-9",
        "HYBRIDFLEET_STREAM_MAX_BYTES": str(1 << 32),
    }
    s = load_settings(None, env=env)
    assert s.edge.max_batch_size == 16 and type(s.edge.max_batch_size) is int
    assert s.edge.default_threshold == 0.5
    assert s.nats.url == "nats://h:1"
    assert s.cloud.worker_id == "c-9"
    assert s.stream.max_bytes == 1 << 32


def test_env_overrides_file(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[edge]\nmax_batch_size = 8\nqueue_capacity = 99\n")
    s = load_settings(path, env={"HYBRIDFLEET_EDGE_MAX_BATCH_SIZE": "16"})
    assert s.edge.max_batch_size == 16  # env wins
    assert s.edge.queue_capacity == 99  # file value kept where env is silent


def test_env_names_are_case_insensitive_after_prefix() -> None:
    s = load_settings(None, env={"HYBRIDFLEET_edge_Max_Batch_Size": "7"})
    assert s.edge.max_batch_size == 7


def test_unrelated_env_vars_ignored() -> None:
    env = {
        "PATH": "/bin",
        "HYBRIDFLEET": "x",
        "hybridfleet_edge_site": "a.b",
        "XHYBRIDFLEET_A": "1",
    }
    assert load_settings(None, env=env) == Settings()


def test_os_environ_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("HYBRIDFLEET_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HYBRIDFLEET_EDGE_QUEUE_CAPACITY", "12")
    assert load_settings().edge.queue_capacity == 12


# ------------------------------------------------------------------ refusals


def test_config_error_is_a_hybridfleet_value_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"HYBRIDFLEET_EDGE_MAX_BATCH_SIZE": "0"})
    assert isinstance(info.value, HybridfleetError) and isinstance(info.value, ValueError)


def test_unknown_section(tmp_path: Path) -> None:
    message = _refused("unknown section [edges]; known: ", _toml(tmp_path, "[edges]\nsite = 'x'\n"))
    for name in SECTIONS:
        assert name in message


def test_top_level_key_that_is_not_a_table(tmp_path: Path) -> None:
    _refused("edge must be a [section] table in", _toml(tmp_path, "edge = 5\n"))


@pytest.mark.parametrize("section", list(SECTIONS))
def test_unknown_key_lists_known_keys(tmp_path: Path, section: str) -> None:
    path = _toml(tmp_path, f"[{section}]\nmax_batch_sise = 16\n")
    known = ", ".join(sorted(f.name for f in dataclasses.fields(SECTIONS[section])))
    _refused(f"{section}.max_batch_sise: unknown key", path)
    assert _refused(f"(allowed: {known})", path).startswith(f"{section}.max_batch_sise")


def test_unknown_key_from_env() -> None:
    message = _refused(
        "edge.max_batch_sizes: unknown key; did you mean 'max_batch_size'? (allowed: ",
        env={"HYBRIDFLEET_EDGE_MAX_BATCH_SIZES": "1"},
    )
    assert "max_batch_size" in message and "default_threshold" in message


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        (
            '[edge]\nmax_batch_size = "sixteen"\n',
            "edge.max_batch_size must be an integer, got 'sixteen'",
        ),
        ("[edge]\nmax_batch_size = 1.5\n", "edge.max_batch_size must be an integer, got 1.5"),
        ("[edge]\nmax_batch_size = 16.0\n", "edge.max_batch_size must be an integer, got 16.0"),
        ("[edge]\nmax_batch_size = true\n", "edge.max_batch_size must be an integer, got True"),
        (
            "[edge]\ndefault_threshold = false\n",
            "edge.default_threshold must be a number, got False",
        ),
        (
            '[edge]\ndefault_threshold = "high"\n',
            "edge.default_threshold must be a number, got 'high'",
        ),
        ("[nats]\nurl = 4222\n", "nats.url must be a string, got 4222"),
        ("[edge]\nsite = true\n", "edge.site must be a string, got True"),
        (
            "[edge]\nmodel_manifest = { path = 'x' }\n",
            "edge.model_manifest must be a string, got {",
        ),
    ],
)
def test_wrong_type_in_file(tmp_path: Path, toml: str, fragment: str) -> None:
    _refused(fragment, _toml(tmp_path, toml))


@pytest.mark.parametrize(
    "toml",
    [
        "[edge]\ndefault_threshold = [0.5]\n",
        "[edge]\nmax_batch_size = [16]\n",
        "[edge]\nmax_batch_size = { n = 16 }\n",
        "[edge]\nmax_batch_size = 1979-05-27\n",
    ],
)
def test_wrong_type_container_in_file(tmp_path: Path, toml: str) -> None:
    _refused(" must be ", _toml(tmp_path, toml))


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("EDGE_MAX_BATCH_SIZE", "16.0", "edge.max_batch_size must be an integer, got '16.0'"),
        ("EDGE_MAX_BATCH_SIZE", "", "edge.max_batch_size must be an integer, got ''"),
        ("EDGE_MAX_BATCH_SIZE", "0x10", "edge.max_batch_size must be an integer, got '0x10'"),
        ("EDGE_DEFAULT_THRESHOLD", "high", "edge.default_threshold must be a number, got 'high'"),
    ],
)
def test_wrong_type_in_env(name: str, value: str, fragment: str) -> None:
    _refused(fragment, env={f"HYBRIDFLEET_{name}": value})


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        (
            "[edge]\nmax_batch_size = 0\n",
            "edge.max_batch_size must be a number in [1, 4096], got 0",
        ),
        (
            "[edge]\nmax_batch_size = 4097\n",
            "edge.max_batch_size must be a number in [1, 4096], got 4097",
        ),
        (
            "[edge]\ndefault_threshold = 1.01\n",
            "edge.default_threshold must be a number in [0, 1], got 1.01",
        ),
        (
            "[edge]\ndefault_threshold = -0.5\n",
            "edge.default_threshold must be a number in [0, 1], got -0.5",
        ),
        (
            "[edge]\ndefault_threshold = nan\n",
            "edge.default_threshold must be a number in [0, 1], got nan",
        ),
        (
            "[edge]\nlatency_target_ms = inf\n",
            "edge.latency_target_ms must be a number in [0.1, 60000], got inf",
        ),
        ("[stream]\nreplicas = 6\n", "stream.replicas must be a number in [1, 5], got 6"),
        (
            "[stream]\nmax_bytes = 1024\n",
            "stream.max_bytes must be a number in [65536, 17592186044416]",
        ),
        (
            "[nats]\nconnect_timeout_s = 0\n",
            "nats.connect_timeout_s must be a number in [0.1, 300], got 0.0",
        ),
        ("[cloud]\nmax_deliver = -1\n", "cloud.max_deliver must be a number in [1, 1000], got -1"),
        (
            "[cloud]\nfetch_timeout_s = 61\n",
            "cloud.fetch_timeout_s must be a number in [0.01, 60], got 61.0",
        ),
    ],
)
def test_out_of_range_names_key_and_range(tmp_path: Path, toml: str, fragment: str) -> None:
    _refused(fragment, _toml(tmp_path, toml))


def test_range_bounds_are_inclusive(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[edge]\nmax_batch_size = 4096\ndefault_threshold = 0.0\n")
    s = load_settings(path, env={"HYBRIDFLEET_STREAM_REPLICAS": "5"})
    assert (s.edge.max_batch_size, s.edge.default_threshold, s.stream.replicas) == (4096, 0.0, 5)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf"])
def test_non_finite_from_env_refused(value: str) -> None:
    _refused(
        "edge.default_threshold must be a number in [0, 1], got ",
        env={"HYBRIDFLEET_EDGE_DEFAULT_THRESHOLD": value},
    )


def test_out_of_range_from_env() -> None:
    _refused(
        "edge.max_batch_size must be a number in [1, 4096], got 5000",
        env={"HYBRIDFLEET_EDGE_MAX_BATCH_SIZE": "5000"},
    )


# A bool setting (edge.face_blur) from TOML or from an env string.
@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("0", False),
        ("false", False),
        ("No", False),
    ],
)
def test_bool_parsing(tmp_path: Path, value: str, want: bool) -> None:
    assert load_settings(None, env={"HYBRIDFLEET_EDGE_FACE_BLUR": value}).edge.face_blur is want
    path = _toml(tmp_path, f"[edge]\nface_blur = {str(want).lower()}\n")
    assert load_settings(path, env={}).edge.face_blur is want


@pytest.mark.parametrize("value", ["maybe", "", "on", "2"])
def test_bool_parsing_refuses(value: str) -> None:
    fragment = f"edge.face_blur must be true or false, got {value!r}"
    _refused(fragment, env={"HYBRIDFLEET_EDGE_FACE_BLUR": value})


@pytest.mark.parametrize("value", ["1", "0", "1.0"])
def test_bool_parsing_refuses_numbers_in_toml(tmp_path: Path, value: str) -> None:
    fragment = f"edge.face_blur must be true or false, got {value}"
    _refused(fragment, _toml(tmp_path, f"[edge]\nface_blur = {value}\n"))


def test_bad_toml(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[edge\nmax_batch_size = \n")
    _refused(f"config file {path} is not valid TOML: ", path)


def test_duplicate_key_is_bad_toml(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[edge]\nsite = 'a'\nsite = 'b'\n")
    _refused("is not valid TOML", path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    _refused(f"config file {path} does not exist", path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    _refused(f"config file {tmp_path}", tmp_path)


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe[edge]\n")
    _refused(f"config file {path}", path)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("edge", "site", "a.b"),
        ("edge", "site", "*"),
        ("edge", "site", "site>"),
        ("edge", "site", "site 1"),
        ("edge", "site", ""),
        ("edge", "site", "s" * 65),
        ("edge", "worker_id", "edge.1"),
        ("cloud", "worker_id", "cloud*"),
    ],
)
def test_token_keys_refused(tmp_path: Path, section: str, key: str, value: str) -> None:
    fragment = f"{section}.{key} must be 1-64 letters, digits, '_' or '-', got {value!r}"
    _refused(fragment, _toml(tmp_path, f"[{section}]\n{key} = {value!r}\n"))
    _refused(fragment, env={f"HYBRIDFLEET_{section.upper()}_{key.upper()}": value})


def test_token_keys_accept_valid_names(tmp_path: Path) -> None:
    s = load_settings(None, env={"HYBRIDFLEET_EDGE_SITE": "North_Site-2"})
    assert s.edge.site == "North_Site-2"


@pytest.mark.parametrize(
    "name",
    [
        "HYBRIDFLEET_FOO_BAR",
        "HYBRIDFLEET_EDGE",
        "HYBRIDFLEET_EDGE_",
        "HYBRIDFLEET_",
        "HYBRIDFLEET_EDGEMAX",
    ],
)
def test_env_var_that_names_no_setting(name: str) -> None:
    message = _refused(
        f"environment variable {name} names no setting; use HYBRIDFLEET_<SECTION>_<KEY>",
        env={name: "1"},
    )
    assert "SECTION one of nats, stream, edge, cloud" in message
