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


REVOKED_PREFIX = "revoked-"
"""A revoked hub's `token_hash` starts with this: it can never equal a SHA-256 hex digest,
so no token matches it (the column is unique and NOT NULL, hence a random tail)."""


def revoked_hash() -> str:
    """What replaces a hub's token hash when its credential is revoked (hub moved)."""
    return REVOKED_PREFIX + secrets.token_hex(16)
