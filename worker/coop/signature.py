"""Verifying that a webhook came from Coop: RSASSA-PKCS1-v1_5 with SHA-256 over the raw body.

Coop's contract (docs/development/api-auth.md in roostorg/coop): the signature is base64 in
the ``Coop-Signature`` header, verified with the organisation's public key.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..errors import FatalError


class PublicKeyError(FatalError):
    """The configured public key cannot be used."""


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise PublicKeyError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise PublicKeyError(f"an RSA public key is needed, got {type(key).__name__}")
    return key


def signature_ok(key: rsa.RSAPublicKey, body: bytes, header: str | None) -> bool:
    """Whether ``header`` (base64) is Coop's signature of exactly ``body``."""
    if not header:
        return False
    try:
        signature = base64.b64decode(header, validate=True)
        key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except (binascii.Error, ValueError, InvalidSignature):
        return False
    return True
