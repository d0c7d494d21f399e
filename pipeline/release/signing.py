"""Ed25519 keys and signatures of model bundles: make keys, sign, verify, read trusted keys.

Keys are raw Ed25519 keys written as hex: 64 characters for a public key (what the
settings list as trusted keys) and for a private key. A PEM (PKCS#8) private key, as
``openssl genpkey -algorithm ed25519`` writes it, is accepted too. Every refusal is a
:class:`~schemas.errors.BundleError` that says what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pipeline.release.manifest import SIGNATURE_FILE
from schemas.errors import BundleError

__all__ = [
    "SIGNATURE_BYTES",
    "generate_keypair",
    "parse_trusted_keys",
    "public_key_of",
    "sign",
    "verify",
]

SIGNATURE_BYTES: Final = 64
_KEY_BYTES: Final = 32
_HEX = re.compile(r"[0-9a-f]+")
# How much of a key names it in a message.
_KEY_CHARS: Final = 12


def generate_keypair() -> tuple[str, str]:
    """A fresh Ed25519 keypair as ``(private_hex, public_hex)``, 64 hex characters each."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return private.hex(), _public_hex(key.public_key())


def public_key_of(private_key: str) -> str:
    """The public key (hex) of a private key given as hex or PEM."""
    return _public_hex(_load_private(private_key).public_key())


def sign(data: bytes, private_key: str) -> bytes:
    """The 64-byte Ed25519 signature of ``data`` with a private key given as hex or PEM."""
    return _load_private(private_key).sign(data)


def verify(
    data: bytes, signature: bytes, trusted_public_keys: Sequence[str], *, where: str = "data"
) -> str:
    """The trusted key (hex) whose signature ``signature`` is over ``data``.

    Any one of ``trusted_public_keys`` is enough, so keys can be rotated by trusting
    the old and the new one for a while. Raises :class:`BundleError` otherwise.
    """
    keys = [_load_public(k, i) for i, k in enumerate(trusted_public_keys, 1)]
    if not keys:
        raise BundleError(
            f"{where}: no trusted public keys configured, so no bundle can be accepted; "
            "set edge.trusted_keys / cloud.trusted_keys (hex, comma-separated)"
        )
    if len(signature) != SIGNATURE_BYTES:
        raise BundleError(
            f"{where}: {SIGNATURE_FILE} is {len(signature)} bytes, an Ed25519 signature is "
            f"{SIGNATURE_BYTES}; re-sign the bundle"
        )
    for key in keys:
        try:
            key.verify(signature, data)
        except InvalidSignature:
            continue
        return _public_hex(key)
    ids = ", ".join(_public_hex(k)[:_KEY_CHARS] + "..." for k in keys)
    raise BundleError(
        f"{where}: signature does not verify against any of the {len(keys)} trusted keys "
        f"({ids}); the bundle was changed after signing or signed with a key this worker "
        "does not trust"
    )


def parse_trusted_keys(text: str) -> tuple[str, ...]:
    """Comma-separated hex public keys (a settings value) as a tuple; checks each one."""
    keys = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    for i, key in enumerate(keys, 1):
        _load_public(key, i)
    return keys


def _public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _load_public(key: str, index: int) -> Ed25519PublicKey:
    text = key.strip().lower() if isinstance(key, str) else ""
    if len(text) != 2 * _KEY_BYTES or not _HEX.fullmatch(text):
        raise BundleError(
            f"trusted key #{index} ({key!r}) is not {2 * _KEY_BYTES} hex characters (a raw "
            "Ed25519 public key); use the .pub file `hybridfleet models keygen` wrote"
        )
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))


def _load_private(key: str) -> Ed25519PrivateKey:
    text = key.strip()
    if text.startswith("-----BEGIN"):
        try:
            loaded = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise BundleError(f"signing key: cannot read the PEM private key: {exc}") from None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise BundleError(f"signing key: a {type(loaded).__name__}, not an Ed25519 key")
        return loaded
    if len(text) != 2 * _KEY_BYTES or not _HEX.fullmatch(text.lower()):
        raise BundleError(
            f"signing key: neither {2 * _KEY_BYTES} hex characters nor a PEM Ed25519 private "
            "key; make one with `hybridfleet models keygen`"
        )
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))
