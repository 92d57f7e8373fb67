"""The console's tables: accounts, sessions, failed logins and the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.console.accounts import (
    Account,
    AccountError,
    Role,
    Session,
    check_new_account,
    hash_password,
    session_key,
)
from server.schema import (
    console_accounts,
    console_audit,
    console_login_failures,
    console_sessions,
    teams,
)


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

    # ------------------------------------------------------------ login rate limit

    async def recent_failures(self, username: str, client: str, since_ms: int) -> tuple[int, int]:
        """Failed logins since `since_ms` (epoch ms): for this username, for this client."""
        f = console_login_failures
        async with self.engine.connect() as conn:
            by_user = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(f)
                .where(f.c.username == username, f.c.at_ms >= since_ms)
            )
            by_client = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(f)
                .where(f.c.client == client, f.c.at_ms >= since_ms)
            )
        return int(by_user or 0), int(by_client or 0)

    async def record_failure(self, username: str, client: str, now_ms: int, keep_ms: int) -> None:
        f = console_login_failures
        async with self.engine.begin() as conn:
            await conn.execute(f.delete().where(f.c.at_ms < now_ms - keep_ms))
            await conn.execute(
                f.insert().values(username=username[:80], client=client[:64], at_ms=now_ms)
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

    async def audit_log(self, limit: int = 500) -> Sequence[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(console_audit).order_by(console_audit.c.id.desc()).limit(limit)
            )
            return [dict(r._mapping) for r in rows]


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
