"""The exceptions hybridfleet raises: one root, one subclass per kind of fault.

Code that retries reads ``retriable``; it never parses a message.
"""

from __future__ import annotations

__all__ = ["BundleError", "ConfigError", "HybridfleetError", "ModelError", "SchemaError"]


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


class BundleError(ModelError):
    """A model bundle is refused: bad signature, a file whose SHA-256 differs from
    ``bundle.json``, a missing file, a model that does not match its manifest, or a
    registry conflict. The message names the file or key and says what to fix.
    """


class ConfigError(HybridfleetError, ValueError):
    """A configuration key is unknown, missing or out of range; the message names the key."""
