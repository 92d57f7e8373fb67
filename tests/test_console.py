"""The console without a browser: accounts, sessions, CSRF, roles, rate limit, the queue's
query and order, the catalogue, the alert tone and `carehub user add`."""

from __future__ import annotations

import asyncio
import io
import uuid
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from carehub.alarm_lifecycle import AlarmKind, Severity
from carehub.api_contract import AlarmUpload
from carehub.clock import FakeClock
from carehub.settings import ServerSettings
from cli.main import app as cli_app
from server.app import create_app
from server.console.accounts import (
    AccountError,
    Role,
    check_new_account,
    hash_password,
    password_matches,
)
from server.console.console_store import ConsoleStore
from server.console.i18n import pick_language, translator
from server.console.live_queue import QueueRow, open_alarms, queue_order
from server.console.session_streams import SessionStreams
from server.console.sign_in_limit import History, Refusal, Refused, SignInLimits, SignInThrottle
from server.console.sound import alert_wav
from server.db import make_engine, migrate
from server.directory import Directory, load_directory
from server.schema import alarms, console_sessions
from server.sealed import Sealer
from server.store import HubIdentity, ServerStore

PASSWORD = "correct horse battery"
SECRET = "s" * 32
FRAGMENT = {"Accept": "text/html-fragment"}
"""What the console's live parts send (`live.js`): the part alone, from the page's route."""
DIRECTORY = {
    "teams": [{"id": "team-a", "name": "A"}, {"id": "team-b", "name": "B"}],
    "doctors": [{"id": "li", "team": "team-a", "name": "Dr Li", "phone": "+8613800000001"}],
    "elders": [
        {
            "id": "elder-a",
            "team": "team-a",
            "name": "Wang A",
            "short_address": "A 1-101",
            "medical_notes": "Warfarin; pacemaker",
            "key_safe_code": "4711",
            "contacts": [{"id": "son", "name": "Son A", "phone": "+8613900000001"}],
        },
        {"id": "elder-b", "team": "team-b", "name": "Zhao B", "short_address": "B 2-202"},
    ],
    "hubs": [
        {"id": "hub-a", "elder": "elder-a", "token": "a" * 24},
        {"id": "hub-b", "elder": "elder-b", "token": "b" * 24},
    ],
    "devices": [
        {"id": "btn-a", "hub": "hub-a", "kind": "button"},
        {"id": "btn-b", "hub": "hub-b", "kind": "button"},
    ],
}
ACCOUNTS = [
    ("disp", "dispatcher", None),
    ("doc-a", "doctor", "team-a"),
    ("doc-b", "doctor", "team-b"),
    ("inst", "installer", None),
    ("root", "admin", None),
]


# ------------------------------------------------------------ the core


def test_new_accounts_are_checked() -> None:
    assert check_new_account("li.wei", "doctor", "team-a", "en") is Role.DOCTOR
    with pytest.raises(AccountError, match="role must be one of"):
        check_new_account("x", "nurse", None, "zh")
    with pytest.raises(AccountError, match="needs --team"):
        check_new_account("x", "doctor", None, "zh")
    with pytest.raises(AccountError, match="username"):
        check_new_account("has space", "admin", None, "zh")
    with pytest.raises(AccountError, match="language"):
        check_new_account("x", "admin", None, "fr")
    with pytest.raises(AccountError, match="at least"):
        hash_password("short")


def test_passwords_are_argon2_and_checked() -> None:
    stored = hash_password(PASSWORD)
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert password_matches(stored, PASSWORD)
    assert not password_matches(stored, PASSWORD + "!")
    assert not password_matches("not a hash", PASSWORD)


LIMITS = SignInLimits(per_source=5, window_ms=300_000, account_free=5, account_delay_max_ms=30_000)


def test_an_address_is_refused_once_it_used_up_its_failures_until_the_window_moves() -> None:
    clock, throttle, mine = FakeClock(), SignInThrottle(LIMITS), []
    for _ in range(5):
        assert throttle.verdict(History(mine, [], known_source=True), clock.now_ms()) is None
        mine.append(clock.now_ms())
        clock.advance(10)
    refused = throttle.verdict(History(mine, [], known_source=True), clock.now_ms())
    assert refused == Refused(Refusal.SOURCE, 250)  # the oldest leaves the window in 250 s
    clock.advance(250)
    assert throttle.verdict(History(mine, [], known_source=True), clock.now_ms()) is None


def test_an_account_failing_from_elsewhere_is_delayed_never_locked() -> None:
    """Failures from many addresses delay new addresses (1 s, doubling, capped), and never
    the account's own address; the delay always ends."""
    clock, throttle, failures = FakeClock(), SignInThrottle(LIMITS), []
    waits = []
    for _ in range(12):
        refused = throttle.verdict(History([], failures, known_source=False), clock.now_ms())
        if refused is not None:
            assert refused.reason is Refusal.ACCOUNT
            waits.append(refused.retry_after_s)
            clock.advance(refused.retry_after_s)
            assert throttle.verdict(History([], failures, False), clock.now_ms()) is None
        assert throttle.verdict(History([], failures, known_source=True), clock.now_ms()) is None
        failures.append(clock.now_ms())
    assert waits == [1, 2, 4, 8, 16, 30, 30]
    clock.advance(300)  # a quiet window forgets them
    assert throttle.verdict(History([], failures, known_source=False), clock.now_ms()) is None
    # below the free failures there is no wait, even behind a try counted a moment later
    now = clock.now_ms()
    assert throttle.verdict(History([], [now + 5], known_source=False), now) is None


@given(st.integers(0, 10_000), st.integers(1, 20), st.integers(1_000, 600_000))
def test_the_account_delay_never_passes_its_cap(failures: int, free: int, cap_ms: int) -> None:
    limits = SignInLimits(5, 300_000, free, cap_ms)
    assert 0 <= limits.account_delay_ms(failures) <= cap_ms
    assert (limits.account_delay_ms(failures) == 0) == (failures < free)


def test_signing_out_ends_each_stream_of_that_session_only_and_forgets_them() -> None:
    streams = SessionStreams()
    with streams.watch("a") as a1, streams.watch("a") as a2, streams.watch("b") as b:
        assert len(streams) == 3
        streams.end("a")
        assert a1.is_set() and a2.is_set() and not b.is_set()
    assert len(streams) == 0


_rows = st.builds(
    QueueRow,
    alarm_id=st.text("abcdef", min_size=1, max_size=4),
    elder_id=st.just("e"),
    elder_name=st.just("e"),
    short_address=st.just(""),
    team_id=st.just("t"),
    kind=st.just("button"),
    severity=st.sampled_from(["critical", "warning", "info"]),
    state=st.just("received"),
    received_at_ms=st.integers(0, 10_000),
)


@given(st.lists(_rows, max_size=12))
def test_queue_shows_critical_before_warning_then_oldest_first(rows: list[QueueRow]) -> None:
    ordered = queue_order(rows)
    assert sorted(map(id, ordered)) == sorted(map(id, rows))
    rank = {"critical": 0, "warning": 1}
    keys = [(rank.get(r.severity, 2), r.received_at_ms) for r in ordered]
    assert keys == sorted(keys)


def test_the_translator_falls_back_to_english_then_to_the_key() -> None:
    assert translator("zh")("logout") == "退出"
    assert translator("fr")("logout") == "Sign out"
    assert translator("en")("no.such.key") == "no.such.key"
    assert pick_language("en-GB,en;q=0.9") == "en"
    assert pick_language("de") == "zh"


def test_alert_tone_is_a_short_wav() -> None:
    with wave.open(io.BytesIO(alert_wav())) as w:
        seconds = w.getnframes() / w.getframerate()
        assert w.getnchannels() == 1 and 0.1 < seconds < 1.0


# ------------------------------------------------------------ the queue's query


async def _seed(database_url: str, clock: FakeClock) -> None:
    engine = make_engine(database_url)
    try:
        await migrate(engine)
        await load_directory(engine, Directory.model_validate(DIRECTORY), Sealer(SECRET))
        store, accounts = ServerStore(engine), ConsoleStore(engine)
        for username, role, team in ACCOUNTS:
            await accounts.add_account(username, PASSWORD, role, team, "en", clock.now_ms())
        for hub, device, severity in [
            ("hub-a", "btn-a", Severity.WARNING),
            ("hub-b", "btn-b", Severity.CRITICAL),
        ]:
            upload = AlarmUpload(
                alarm_id=uuid.uuid4().hex,
                device_id=device,
                kind=AlarmKind.BUTTON,
                severity=severity,
                raised_at_ms=clock.now_ms(),
            )
            await store.store_alarm(HubIdentity(hub, "elder-" + hub[-1]), upload, clock.now_ms())
            clock.advance(1)
    finally:
        await engine.dispose()


async def test_open_alarms_by_severity_and_team(database_url: str) -> None:
    await _seed(database_url, FakeClock())
    engine = make_engine(database_url)
    try:
        everyone = await open_alarms(engine)
        assert [r.elder_name for r in everyone] == ["Zhao B", "Wang A"]  # critical first
        assert [r.elder_name for r in await open_alarms(engine, "team-a")] == ["Wang A"]
        async with engine.begin() as conn:
            await conn.execute(alarms.update().values(state="resolved"))
        assert await open_alarms(engine) == []
    finally:
        await engine.dispose()


# ------------------------------------------------------------ over HTTP


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
    asyncio.run(_seed(url, FakeClock()))
    return url


def _client(db_url: str, **settings: object) -> Iterator[TestClient]:
    s = ServerSettings(
        database_url=db_url, console_insecure_cookies=True, secret_key=SECRET, **settings
    )  # type: ignore[arg-type]
    with TestClient(create_app(s), base_url="http://testserver") as client:
        yield client


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    yield from _client(db_url)


def _login_token(client: TestClient) -> str:
    page = client.get("/console/login")
    assert page.status_code == 200
    return page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def login(client: TestClient, username: str, password: str = PASSWORD) -> int:
    token = _login_token(client)
    r = client.post(
        "/console/login",
        data={"username": username, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    return r.status_code


def csrf(client: TestClient) -> str:
    page = client.get("/console/", headers={"Accept": "text/html"})
    return page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def test_session_cookie_is_httponly_lax_and_secure_unless_configured(db_url: str) -> None:
    for insecure in (False, True):
        s = ServerSettings(database_url=db_url, console_insecure_cookies=insecure)
        with TestClient(create_app(s), base_url="https://testserver") as c:
            token = _login_token(c)
            r = c.post(
                "/console/login",
                data={"username": "disp", "password": PASSWORD, "csrf_token": token},
                follow_redirects=False,
            )
            assert r.status_code == 303
            cookie = r.headers["set-cookie"].lower()
            assert "carehub_session=" in cookie and "httponly" in cookie
            assert "samesite=lax" in cookie
            assert ("secure" in cookie.replace("samesite", "")) is not insecure


def test_sessions_are_stored_hashed_and_logout_ends_them(client: TestClient, db_url: str) -> None:
    assert login(client, "disp") == 303
    cookie = client.cookies["carehub_session"]
    assert client.get("/console/").status_code == 200

    async def stored() -> list[str]:
        engine = make_engine(db_url)
        async with engine.connect() as conn:
            ids = list((await conn.execute(sa.select(console_sessions.c.id_hash))).scalars())
        await engine.dispose()
        return ids

    ids = asyncio.run(stored())
    assert len(ids) == 1 and cookie not in ids
    token = csrf(client)
    assert client.post("/console/logout", data={"csrf_token": token}).status_code == 200
    client.cookies.set("carehub_session", cookie, path="/console")  # the old cookie, replayed
    assert client.get("/console/").status_code == 401
    for live in ("/console/", "/console/health"):  # the live parts' fetch: 401, not the login page
        part = client.get(live, headers=FRAGMENT, follow_redirects=False)
        assert part.status_code == 401, live
    assert asyncio.run(stored()) == []


def test_posts_without_the_csrf_token_are_refused(client: TestClient) -> None:
    assert login(client, "disp") == 303
    assert client.post("/console/logout").status_code == 403
    assert client.post("/console/logout", data={"csrf_token": "forged"}).status_code == 403
    assert client.get("/console/").status_code == 200  # still signed in
    client.cookies.clear()
    r = client.post("/console/login", data={"username": "disp", "password": PASSWORD})
    assert r.status_code == 403


def test_the_sign_in_form_needs_the_token_its_own_page_set(client: TestClient) -> None:
    """Login CSRF: without the cookie of a GET of the form, no token is right (the old
    stand-in for a missing cookie, a NUL then "missing", signed in); an empty cookie is no
    token; and a browser's post from another origin is refused even with the token."""
    form = {"username": "disp", "password": PASSWORD}
    for forged in ("\0missing", "", "missing"):
        client.cookies.clear()
        r = client.post("/console/login", data={**form, "csrf_token": forged})
        assert r.status_code == 403, forged
    client.cookies.clear()
    client.cookies.set("carehub_login_csrf", "", path="/console")
    assert client.post("/console/login", data={**form, "csrf_token": ""}).status_code == 403
    token = _login_token(client)
    for header in (
        {"Origin": "http://attacker.test"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        r = client.post("/console/login", data={**form, "csrf_token": token}, headers=header)
        assert r.status_code == 403, header
        assert "another site" in r.text
    own = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    r = client.post(
        "/console/login", data={**form, "csrf_token": token}, headers=own, follow_redirects=False
    )
    assert r.status_code == 303


def test_wrong_passwords_are_limited_per_client_address(db_url: str) -> None:
    for client in _client(db_url, console_login_max_failures=3):
        assert login(client, "disp", "wrong password") == 401
        assert login(client, "disp", "wrong password") == 401
        assert login(client, "nobody", "wrong password") == 401
        assert login(client, "root") == 429  # this client used up its failures
    for client in _client(db_url, console_login_max_failures=3):
        # the same database, a fresh limit window is not given by a restart
        assert login(client, "disp") == 429


def test_concurrent_wrong_passwords_cannot_all_pass_one_check(database_url: str) -> None:
    """30 wrong passwords at once from one address: the check and the count are one step
    (in the database, for every server process), so only the allowed five are tried, and
    the right password after them is refused too."""
    asyncio.run(_seed(database_url, FakeClock()))
    for client in _client(database_url):
        token = _login_token(client)

        def attempt(password: str, client: TestClient = client, token: str = token) -> int:
            data = {"username": "disp", "password": password, "csrf_token": token}
            return client.post("/console/login", data=data, follow_redirects=False).status_code

        with ThreadPoolExecutor(30) as pool:
            codes = list(pool.map(attempt, ["wrong password"] * 30))
        assert sorted(codes) == [401] * 5 + [429] * 25, codes
        assert attempt(PASSWORD) == 429


def _client_from_header(app: Any) -> Any:
    """The app, seeing the client address a test names in ``X-Test-Client``."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        who = dict(scope.get("headers", [])).get(b"x-test-client")
        if scope["type"] == "http" and who:
            scope = {**scope, "client": (who.decode(), 50000)}
        await app(scope, receive, send)

    return asgi


def test_an_outsider_cannot_keep_a_dispatcher_on_duty_out(db_url: str) -> None:
    """Thirty wrong passwords for `disp` from ten addresses: `disp` still signs in at once
    from the address they signed in from before, and from a new one after a short delay."""
    clock = FakeClock()
    s = ServerSettings(
        database_url=db_url,  # type: ignore[arg-type]
        console_insecure_cookies=True,
        console_login_window_s=3600,
    )
    with TestClient(_client_from_header(create_app(s, clock=clock))) as client:

        def attempt(address: str, password: str) -> Any:
            client.cookies.clear()
            token = _login_token(client)
            data = {"username": "disp", "password": password, "csrf_token": token}
            return client.post(
                "/console/login",
                data=data,
                headers={"X-Test-Client": address, "Accept-Language": "en"},
                follow_redirects=False,
            )

        assert attempt("control-room", PASSWORD).status_code == 303
        for i in range(30):
            clock.advance(31)  # past the account's longest delay: every guess is tried
            assert attempt(f"outsider-{i % 10}", "wrong password").status_code == 401
        assert attempt("control-room", PASSWORD).status_code == 303
        delayed = attempt("new-desk", PASSWORD)
        assert delayed.status_code == 429 and "several failed sign-ins" in delayed.text
        wait_s = int(delayed.headers["Retry-After"])
        assert 1 <= wait_s <= 30
        clock.advance(wait_s)
        assert attempt("new-desk", PASSWORD).status_code == 303


def test_roles_see_what_they_need(client: TestClient) -> None:
    assert (
        client.get("/console/", headers={"Accept": "text/html"}, follow_redirects=False).headers[
            "location"
        ]
        == "/console/login"
    )
    assert login(client, "disp") == 303
    queue = client.get("/console/").text
    assert "Zhao B" in queue and "Wang A" in queue
    assert queue.index("Zhao B") < queue.index("Wang A")  # critical first
    assert client.get("/console/audit").status_code == 403
    assert client.get("/console/accounts").status_code == 403

    client.cookies.clear()
    assert login(client, "doc-a") == 303
    queue = client.get("/console/").text
    assert "Wang A" in queue and "Zhao B" not in queue
    rows = client.get("/console/", headers=FRAGMENT).text  # what the live feed fetches
    assert "Wang A" in rows and "Zhao B" not in rows and "<html" not in rows

    client.cookies.clear()
    assert login(client, "inst") == 303
    sent_on = client.get("/console/", follow_redirects=False)  # no medical data: the board
    assert sent_on.status_code == 303 and sent_on.headers["location"] == "/console/health"
    assert client.get("/console/", headers=FRAGMENT).status_code == 403

    client.cookies.clear()
    assert login(client, "root") == 303
    assert client.get("/console/accounts").status_code == 200
    assert "doc-b" in client.get("/console/accounts").text


def test_the_audit_log_shows_who_saw_medical_data_to_admins(
    client: TestClient, db_url: str
) -> None:
    async def seen() -> None:
        engine = make_engine(db_url)
        store = ConsoleStore(engine)
        found = await store.credentials("doc-a")
        assert found is not None
        await store.audit(found[0], "key_safe", "elder-a", None, 1_700_000_000_000)
        await engine.dispose()

    asyncio.run(seen())
    assert login(client, "root") == 303
    page = client.get("/console/audit").text
    assert "doc-a" in page and "key-safe code" in page and "elder-a" in page


def test_language_is_switched_and_stored_on_the_account(client: TestClient) -> None:
    assert login(client, "disp") == 303
    assert "Open alarms" in client.get("/console/").text
    r = client.post("/console/language", data={"csrf_token": csrf(client), "language": "zh"})
    assert r.status_code == 200 and "未处理的警报" in r.text
    client.cookies.clear()
    assert login(client, "disp") == 303
    assert "未处理的警报" in client.get("/console/").text
    refused = client.post("/console/language", data={"csrf_token": csrf(client), "language": "fr"})
    assert refused.status_code == 400 and "zh, en" in refused.text


def test_user_add_command(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    ok = runner.invoke(
        cli_app,
        [
            "user",
            "add",
            "--username",
            "amy",
            "--role",
            "dispatcher",
            "--password-stdin",
            "--database-url",
            url,
        ],
        input=PASSWORD + "\n",
    )
    assert ok.exit_code == 0, ok.output
    assert "amy (dispatcher) created" in ok.output
    again = runner.invoke(
        cli_app,
        [
            "user",
            "add",
            "--username",
            "amy",
            "--role",
            "dispatcher",
            "--password-stdin",
            "--database-url",
            url,
        ],
        input=PASSWORD + "\n",
    )
    assert again.exit_code == 2 and "is taken" in again.output
    unknown_team = runner.invoke(
        cli_app,
        [
            "user",
            "add",
            "--username",
            "bo",
            "--role",
            "doctor",
            "--team",
            "nope",
            "--password-stdin",
            "--database-url",
            url,
        ],
        input=PASSWORD + "\n",
    )
    assert unknown_team.exit_code == 2 and "no team 'nope'" in unknown_team.output
