"""The console's tables: accounts, sessions, the sign-in limit's history and the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from carehub.api_contract import CallDirection, CallState
from server.console.accounts import (
    Account,
    AccountError,
    Role,
    Session,
    check_new_account,
    hash_password,
    session_key,
)
from server.console.audit_log import (
    PAGE_ROWS,
    UNANSWERED_CALL,
    AuditFilter,
    AuditPage,
    PageKey,
    RowSource,
)
from server.console.sign_in_limit import History, Refused, SignInThrottle
from server.db import dialect_insert, serialise_on
from server.schema import (
    alarms,
    console_accounts,
    console_audit,
    console_login_failures,
    console_login_sources,
    console_sessions,
    notifications,
    teams,
    voice_calls,
)

KNOWN_SOURCE_MS = 90 * 86_400_000
"""An address an account signed in from stays its own for 90 days after the last time."""


class _NotCounted(Exception):
    """A refused sign-in try: its count is rolled back with the transaction."""

    def __init__(self, refused: Refused) -> None:
        self.refused = refused


def _account(row: Any) -> Account:
    return Account(row.id, row.username, Role(row.role), row.team_id, row.language)


class ConsoleStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # ------------------------------------------------------------ accounts

    async def add_account(
        self,
        username: str,
        password: str,
        role: str,
        team_id: str | None,
        language: str,
        now_ms: int,
    ) -> Account:
        parsed = check_new_account(username, role, team_id, language)
        password_hash = hash_password(password)
        async with self.engine.begin() as conn:
            if team_id is not None:
                known = await conn.execute(sa.select(teams.c.id).where(teams.c.id == team_id))
                if known.first() is None:
                    raise AccountError(f"no team {team_id!r}: load it with the directory first")
            taken = await conn.execute(
                sa.select(console_accounts.c.id).where(console_accounts.c.username == username)
            )
            if taken.first() is not None:
                raise AccountError(f"the username {username!r} is taken")
            account = Account(uuid.uuid4().hex, username, parsed, team_id, language)
            await conn.execute(
                console_accounts.insert().values(
                    id=account.id,
                    username=username,
                    password_hash=password_hash,
                    role=parsed.value,
                    team_id=team_id,
                    language=language,
                    created_at_ms=now_ms,
                )
            )
        return account

    async def credentials(self, username: str) -> tuple[Account, str] | None:
        """The account and its password hash, to check a login against."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(console_accounts).where(console_accounts.c.username == username)
                )
            ).first()
        return None if row is None else (_account(row), row.password_hash)

    async def set_language(self, account_id: str, language: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                console_accounts.update()
                .where(console_accounts.c.id == account_id)
                .values(language=language)
            )

    async def list_accounts(self) -> Sequence[Account]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(console_accounts).order_by("username"))
            return [_account(r) for r in rows]

    # ------------------------------------------------------------ sessions

    async def start_session(
        self, account_id: str, session_id: str, csrf_token: str, now_ms: int, expires_at_ms: int
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(  # the moment to forget every expired session
                console_sessions.delete().where(console_sessions.c.expires_at_ms <= now_ms)
            )
            await conn.execute(
                console_sessions.insert().values(
                    id_hash=session_key(session_id),
                    account_id=account_id,
                    csrf_token=csrf_token,
                    created_at_ms=now_ms,
                    expires_at_ms=expires_at_ms,
                )
            )

    async def session(self, session_id: str, now_ms: int) -> Session | None:
        """The live session of this cookie value, or None (unknown, ended or expired)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(console_sessions, console_accounts)
                    .join(console_accounts)
                    .where(
                        console_sessions.c.id_hash == session_key(session_id),
                        console_sessions.c.expires_at_ms > now_ms,
                    )
                )
            ).first()
        if row is None:
            return None
        return Session(_account(row), row.csrf_token, row.expires_at_ms)

    async def end_session(self, session_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                console_sessions.delete().where(
                    console_sessions.c.id_hash == session_key(session_id)
                )
            )

    # ------------------------------------------------------------ sign-in limit

    async def claim_sign_in(
        self, username: str, client: str, now_ms: int, throttle: SignInThrottle
    ) -> int | Refused:
        """Count a sign-in try as a failure before its password is checked (the id given
        back is taken back by `sign_in_succeeded`), or `Refused` (not counted then).

        Counting, reading and judging are one step, serialised per address and per username
        across processes (PostgreSQL: advisory locks; SQLite: its one writer, taken by the
        first statement, which writes), so tries made at once cannot all pass one check."""
        f = console_login_failures
        username, client = username[:80], client[:64]
        since = now_ms - throttle.limits.window_ms
        async with self.engine.begin() as conn:
            await conn.execute(f.delete().where(f.c.at_ms <= since))
        try:
            async with self.engine.begin() as conn:
                await serialise_on(conn, f"carehub-console-login-source:{client}")
                await serialise_on(conn, f"carehub-console-login-account:{username}")
                inserted = await conn.execute(
                    f.insert()
                    .values(username=username, client=client, at_ms=now_ms)
                    .returning(f.c.id)
                )
                attempt_id = int(inserted.scalar_one())
                earlier = (f.c.id != attempt_id, f.c.at_ms > since)
                by_source = await conn.scalars(
                    sa.select(f.c.at_ms).where(f.c.client == client, *earlier).order_by(f.c.at_ms)
                )
                source_failures = list(by_source)
                by_account = await conn.scalars(
                    sa.select(f.c.at_ms)
                    .where(f.c.username == username, *earlier)
                    .order_by(f.c.at_ms)
                )
                account_failures = list(by_account)
                s = console_login_sources
                known = await conn.scalar(
                    sa.select(s.c.last_ok_ms).where(
                        s.c.username == username,
                        s.c.client == client,
                        s.c.last_ok_ms > now_ms - KNOWN_SOURCE_MS,
                    )
                )
                history = History(source_failures, account_failures, known is not None)
                refused = throttle.verdict(history, now_ms)
                if refused is not None:
                    raise _NotCounted(refused)  # rolls the count back
        except _NotCounted as e:
            return e.refused
        return attempt_id

    async def sign_in_succeeded(
        self, attempt_id: int, username: str, client: str, now_ms: int
    ) -> None:
        """The try was not a failure after all; this address is now one of the account's
        own (its delay after failures elsewhere does not apply here)."""
        s = console_login_sources
        async with self.engine.begin() as conn:
            await conn.execute(
                console_login_failures.delete().where(console_login_failures.c.id == attempt_id)
            )
            await conn.execute(s.delete().where(s.c.last_ok_ms <= now_ms - KNOWN_SOURCE_MS))
            values = {"username": username[:80], "client": client[:64], "last_ok_ms": now_ms}
            await conn.execute(
                dialect_insert(self.engine, s)
                .values(**values)
                .on_conflict_do_update(index_elements=["username", "client"], set_=values)
            )

    # ------------------------------------------------------------ audit

    async def audit(
        self, account: Account, action: str, elder_id: str, alarm_id: str | None, now_ms: int
    ) -> None:
        """Record that `account` saw an elder's medical notes or key-safe code."""
        async with self.engine.begin() as conn:
            await conn.execute(
                console_audit.insert().values(
                    at_ms=now_ms,
                    account_id=account.id,
                    username=account.username,
                    action=action,
                    elder_id=elder_id,
                    alarm_id=alarm_id,
                )
            )

    async def is_alarm_of(self, alarm_id: str, elder_id: str) -> bool:
        """Whether `alarm_id` is one of this elder's alarms (a view's stated reason)."""
        async with self.engine.connect() as conn:
            found = await conn.scalar(
                sa.select(alarms.c.id).where(alarms.c.id == alarm_id, alarms.c.elder_id == elder_id)
            )
        return found is not None

    async def acceptance_of(self, alarm_id: str, member_id: str) -> str | None:
        """The notification `member_id` accepted `alarm_id` through (their arrival is an
        answer to it), if any."""
        async with self.engine.connect() as conn:
            found = await conn.scalar(
                sa.select(notifications.c.id)
                .where(
                    notifications.c.alarm_id == alarm_id,
                    notifications.c.doctor_id == member_id,
                    notifications.c.response == "accepted",
                )
                .limit(1)
            )
        return None if found is None else str(found)

    async def audit_log(
        self, where: AuditFilter, older_than: PageKey | None = None, limit: int = PAGE_ROWS
    ) -> AuditPage:
        """One page of the audit log, newest first: the accounts' views and the home's calls
        nobody answered (no account to name: a row of its own, with how long it rang),
        matching `where`, below `older_than` (a keyset page: stable while rows are written)."""
        a, c = console_audit, voice_calls
        views = sa.select(
            a.c.at_ms.label("at_ms"),
            sa.literal(RowSource.VIEW.value).label("source"),
            sa.cast(a.c.id, sa.String).label("row_id"),
            a.c.username.label("username"),
            a.c.action.label("action"),
            a.c.elder_id.label("elder_id"),
            a.c.alarm_id.label("alarm_id"),
            sa.cast(sa.null(), sa.BigInteger).label("duration_ms"),
            sa.cast(sa.null(), sa.String).label("end_reason"),
        )
        unanswered = (
            sa.select(
                c.c.created_at_ms.label("at_ms"),
                sa.literal(RowSource.CALL.value).label("source"),
                c.c.id.label("row_id"),
                sa.cast(sa.null(), sa.String).label("username"),
                sa.literal(UNANSWERED_CALL).label("action"),
                alarms.c.elder_id.label("elder_id"),
                c.c.alarm_id.label("alarm_id"),
                (c.c.ended_at_ms - c.c.created_at_ms).label("duration_ms"),
                c.c.end_reason.label("end_reason"),
            )
            .join(alarms, alarms.c.id == c.c.alarm_id)
            .where(
                c.c.direction == CallDirection.FROM_HOME.value,
                c.c.state == CallState.ENDED.value,
                c.c.answered_at_ms.is_(None),
            )
        )
        if where.account is not None:
            views = views.where(a.c.username == where.account)
        parts = []
        for part, at_ms, elder_id in (
            (views, a.c.at_ms, a.c.elder_id),
            (unanswered, c.c.created_at_ms, alarms.c.elder_id),
        ):
            if where.elder_id is not None:
                part = part.where(elder_id == where.elder_id)
            if where.since_ms is not None:
                part = part.where(at_ms >= where.since_ms)
            if where.until_ms is not None:
                part = part.where(at_ms < where.until_ms)
            if older_than is not None:
                part = part.where(at_ms <= older_than.at_ms)
            parts.append(part)
        if where.account is not None:  # a call nobody answered has no account
            parts = parts[:1]
        log = sa.union_all(*parts).subquery("log")
        order = (log.c.at_ms, log.c.source, log.c.row_id)
        query = sa.select(log).order_by(*(col.desc() for col in order)).limit(limit + 1)
        if older_than is not None:
            key = (older_than.at_ms, older_than.source.value, older_than.row_id)
            query = query.where(sa.tuple_(*order) < sa.tuple_(*key))
        async with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(query)]
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        key_out = (
            PageKey(int(last["at_ms"]), RowSource(last["source"]), str(last["row_id"]))
            if last is not None
            else None
        )
        return AuditPage(rows, key_out)


async def add_account_to(
    database_url: str,
    username: str,
    password: str,
    role: str,
    team_id: str | None,
    language: str,
    now_ms: int,
) -> Account:
    """`carehub user add`: migrate the database if needed, then create the account."""
    from server.db import make_engine, migrate

    engine = make_engine(database_url)
    try:
        await migrate(engine)
        return await ConsoleStore(engine).add_account(
            username, password, role, team_id, language, now_ms
        )
    finally:
        await engine.dispose()
