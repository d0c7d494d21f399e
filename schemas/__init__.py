"""hybridfleet's wire contract: message types, their codecs and subject names.

Nothing in this package does I/O. See docs/wire-format.md for the contract in prose;
schemas/vectors/ holds golden messages in both wire forms.
"""

from schemas.codec import (
    DEFAULT_MAX_BYTES,
    MAX_DEADLINE_S,
    MAX_UNIX_TIME,
    SCHEMA_VERSION,
    check_token,
    decode_dead_letter,
    decode_escalation,
    decode_frame,
    decode_result,
    encode,
)
from schemas.errors import ConfigError, HybridfleetError, ModelError, SchemaError
from schemas.jsonform import decode_frame_message, encode_result_for, from_json, to_json
from schemas.messages import (
    DeadLetter,
    Escalation,
    Frame,
    InferenceResult,
    PrivacyClass,
    Reason,
    Region,
    Source,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_DEADLINE_S",
    "MAX_UNIX_TIME",
    "SCHEMA_VERSION",
    "ConfigError",
    "DeadLetter",
    "Escalation",
    "Frame",
    "HybridfleetError",
    "InferenceResult",
    "ModelError",
    "PrivacyClass",
    "Reason",
    "Region",
    "SchemaError",
    "Source",
    "check_token",
    "decode_dead_letter",
    "decode_escalation",
    "decode_frame",
    "decode_frame_message",
    "decode_result",
    "encode",
    "encode_result_for",
    "from_json",
    "to_json",
]
