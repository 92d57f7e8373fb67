"""Console accounts: roles, password hashing, session ids (the sign-in limit is in
`sign_in_limit`).

Pure decisions and hashing only; the tables are in `console_store`, the cookies in `web`.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,80}$")
LANGUAGES = ("zh", "en")
MIN_PASSWORD_CHARS = 8

_hasher = PasswordHasher()


class Role(enum.StrEnum):
    """What an account may see: dispatchers every open alarm, doctors their own team's,
    installers devices and hubs but no medical data, admins everything plus the audit log."""

    DISPATCHER = "dispatcher"
    DOCTOR = "doctor"
    INSTALLER = "installer"
    ADMIN = "admin"


MEDICAL_ROLES = (Role.DISPATCHER, Role.DOCTOR, Role.ADMIN)
"""Roles that see elders' alarms and medical data (not installers)."""


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    role: Role
    team_id: str | None
    language: str


@dataclass(frozen=True)
class Session:
    account: Account
    csrf_token: str
    expires_at_ms: int


class AccountError(ValueError):
    """An account that cannot be created as asked; the message says what to change."""


def check_new_account(username: str, role: str, team_id: str | None, language: str) -> Role:
    """The role of a valid new account, or `AccountError` saying what is wrong."""
    if not USERNAME.match(username):
        raise AccountError("username: 1-80 letters, digits or _ . @ -")
    try:
        parsed = Role(role)
    except ValueError:
        raise AccountError(f"role must be one of {', '.join(r.value for r in Role)}") from None
    if parsed is Role.DOCTOR and not team_id:
        raise AccountError("a doctor needs --team: doctors see their own team's alarms only")
    if language not in LANGUAGES:
        raise AccountError(f"language must be one of {', '.join(LANGUAGES)}")
    return parsed


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"the password needs at least {MIN_PASSWORD_CHARS} characters")
    return _hasher.hash(password)


def password_matches(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
"""Verified against for unknown usernames, so a login takes as long whether or not the
account exists."""


def new_session_id() -> str:
    """The cookie's value: 256 random bits (stored only as `session_key`)."""
    return secrets.token_urlsafe(32)


def session_key(session_id: str) -> str:
    """What the database keeps of a session id: its SHA-256 (the id is high-entropy, so no
    stretching is needed); a leaked table does not give working cookies."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)
