"""The exceptions hybridfleet raises: one root, one subclass per kind of fault.

Code that retries reads ``retriable``; it never parses a message.
"""

from __future__ import annotations

__all__ = ["ConfigError", "HybridfleetError", "ModelError", "SchemaError"]


class HybridfleetError(Exception):
    """Root of every error hybridfleet raises on purpose."""

    retriable: bool = False


class SchemaError(HybridfleetError, ValueError):
    """A message does not match the wire contract (docs/wire-format.md).

    The message says what is wrong and where, e.g.
    ``frame.image: shape [480, 641] does not match 307200 bytes of uint8``.
    Never retriable: the same bytes fail the same way.
    """


class ModelError(HybridfleetError):
    """A model file is missing, corrupt, does not match its manifest, or failed to run."""


class ConfigError(HybridfleetError, ValueError):
    """A configuration key is unknown, missing or out of range; the message names the key."""
