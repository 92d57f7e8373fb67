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
so no token matches it. The tail is the start of the revoked token's hash (56 of 64 hex
digits, to fit the column): a hub still calling with it is recognised (`revoked_match`) and
shown on the health board, and the caller learns nothing more than from any wrong token."""


def revoked_hash(token_hash: str) -> str:
    """What replaces a hub's token hash when its credential is revoked (hub moved); a hash
    revoked already stays as it is."""
    if token_hash.startswith(REVOKED_PREFIX):
        return token_hash
    return REVOKED_PREFIX + token_hash[:56]


def revoked_match(token: str) -> str:
    """The `token_hash` a hub has when `token` was its revoked credential."""
    return revoked_hash(hash_token(token))
