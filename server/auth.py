"""Hub tokens: random secrets shown once at enrollment, stored only as SHA-256 hashes.

Tokens carry 256 bits of entropy, so a fast hash is sufficient (no password stretching).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
