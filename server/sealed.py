"""Secrets at rest (an elder's key-safe code): sealed with Fernet (AES-128-CBC + HMAC-SHA256,
from `cryptography`) under a key derived from ``CAREHUB_SECRET_KEY``.

A copy of the database, or a backup, does not open anyone's door; the code is unsealed
only to show it to a responder who accepted the alarm (and each reveal is recorded).
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class SealError(ValueError):
    """A sealed value does not open with this key (the key changed, or the data did)."""


class Sealer:
    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < 16:
            raise ValueError("CAREHUB_SECRET_KEY must be at least 16 characters")
        digest = hashlib.sha256(b"carehub-sealed-v1\0" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def unseal(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SealError("sealed value does not open with CAREHUB_SECRET_KEY") from None
