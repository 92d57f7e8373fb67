"""Enrollment codes and the enrollment rate limit: plain decisions, no I/O.

An installer reads a code aloud or types it on the hub, so it is short, upper-case and
grouped (``K7QF-M2XR-9PTA``), from an alphabet without look-alikes (no 0/O, 1/I/L). Twelve
characters of 31 give 59 bits: with a few attempts per source and window, guessing one live
code in its 30 minutes is hopeless even for a million sources, so a fast hash (SHA-256) is
enough to store it.

The limits are per source and per household, never global: a global limit let a few
addresses lock every installer in the district out. A source is an IPv4 address or an IPv6
/64 (one subscriber's network, whose addresses cost nothing); a household's codes that no
longer work (used or expired) can be tried only so often, a live code always redeems.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import secrets
from dataclasses import dataclass

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
GROUPS, GROUP_CHARS = 3, 4


def new_code() -> str:
    """A fresh code, e.g. ``K7QF-M2XR-9PTA`` (shown once; only its hash is stored)."""
    chars = [secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_CHARS)]
    return "-".join("".join(chars[i : i + GROUP_CHARS]) for i in range(0, len(chars), GROUP_CHARS))


def normalise(code: str) -> str:
    """What is hashed: case and dashes do not matter (``k7qf m2xr…`` typed by hand works)."""
    return code.replace("-", "").replace(" ", "").upper()


def code_hash(code: str) -> str:
    return hashlib.sha256(b"carehub-enroll\0" + normalise(code).encode()).hexdigest()


class CodeRefusal(enum.StrEnum):
    """Why a code did not enroll a hub (each answered with its own status and message)."""

    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


def why_refused(used_at_ms: int | None, expires_at_ms: int | None, now_ms: int) -> CodeRefusal:
    """After the atomic redemption found nothing: the code's stored row says why
    (`expires_at_ms` None: no such code)."""
    if expires_at_ms is None:
        return CodeRefusal.UNKNOWN
    if used_at_ms is not None:
        return CodeRefusal.USED
    assert expires_at_ms <= now_ms, "a live unused code is redeemed, not refused"
    return CodeRefusal.EXPIRED


IPV6_SOURCE_PREFIX = 64


def enroll_source(address: str) -> str:
    """The source an attempt is counted against: an IPv4 address, or the /64 an IPv6
    address lies in (an IPv4-mapped IPv6 address is its IPv4 address); anything else as
    given (uvicorn's client host is not always an address, e.g. ``testclient``)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:60]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_SOURCE_PREFIX), strict=False))
    return str(ip)


@dataclass(frozen=True)
class EnrollLimits:
    """At most `per_source` attempts from one source (`enroll_source`) and `per_household`
    with one household's codes that no longer work, within `window_ms` (successful ones
    count too: a hub enrolls once)."""

    per_source: int
    per_household: int
    window_ms: int


def retry_after_s(
    by_source: list[int], by_household: list[int], limits: EnrollLimits, now_ms: int
) -> int | None:
    """None when another attempt may be made now; else the seconds until it may.

    `by_source` and `by_household` are the times (epoch ms) of the counted attempts within
    the window, oldest first (`by_household` empty for an unknown or live code): a limit
    frees up when its oldest counted attempt leaves the window."""
    waits = []
    for times, limit in ((by_source, limits.per_source), (by_household, limits.per_household)):
        if len(times) >= limit:
            frees_at = times[len(times) - limit] + limits.window_ms
            waits.append(frees_at - now_ms)
    if not waits:
        return None
    return max(1, -(-max(waits) // 1000))  # whole seconds, rounded up, at least 1


def source_key(source: str) -> str:
    """The `enroll_attempts.client` value counting a source's attempts."""
    return "s:" + source


def household_key(household_id: str) -> str:
    """The `enroll_attempts.client` value counting attempts with a household's codes."""
    return "h:" + hashlib.sha256(household_id.encode()).hexdigest()[:32]
