"""No request waits for FastAPI's thread pool: the endpoints and dependencies the hub, admin
and health routes go through are coroutines. FastAPI runs a plain ``def`` in a worker
thread, one hand-off there and back per call; two such dependencies on every hub request
cost about 5 % of the server's time under load (`bench server`, py-spy)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastapi.dependencies.utils
import fastapi.routing
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from carehub.admin_contract import ADMIN_PREFIX
from carehub.api_contract import ALARMS_PATH, HEALTH_PATH, HUB_HEARTBEAT_PATH
from carehub.settings import ServerSettings
from server.app import create_app
from server.notifier import ConsoleNotifier


@pytest.fixture
def threadpool_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Names of what FastAPI handed to its thread pool while the test ran."""
    seen: list[str] = []
    for module in (fastapi.dependencies.utils, fastapi.routing):
        original = module.run_in_threadpool  # type: ignore[attr-defined]

        def counting(func: Callable[..., Any], *a: Any, _o: Any = original, **kw: Any) -> Any:
            seen.append(getattr(func, "__qualname__", repr(func)))
            return _o(func, *a, **kw)

        monkeypatch.setattr(module, "run_in_threadpool", counting)
    yield seen


def test_the_probe_sees_a_plain_def_dependency(threadpool_calls: list[str]) -> None:
    def plain() -> int:
        return 1

    app = FastAPI()

    @app.get("/x")
    async def x(v: int = Depends(plain)) -> int:
        return v

    with TestClient(app) as client:
        assert client.get("/x").json() == 1
    assert "test_the_probe_sees_a_plain_def_dependency.<locals>.plain" in threadpool_calls


def test_hub_admin_and_health_requests_never_use_the_thread_pool(
    tmp_path: Path, threadpool_calls: list[str]
) -> None:
    settings = ServerSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'server.db'}", admin_token="admin"
    )
    bearer = {"Authorization": "Bearer not-a-hub"}
    with TestClient(create_app(settings, notifier=ConsoleNotifier())) as client:
        assert client.get(HEALTH_PATH).status_code == 200
        assert client.post(HUB_HEARTBEAT_PATH, json={}, headers=bearer).status_code == 401
        assert client.post(ALARMS_PATH, json={}, headers=bearer).status_code in (401, 422)
        admin = {"Authorization": "Bearer admin"}
        assert client.get(f"{ADMIN_PREFIX}/alarms", headers=admin).status_code == 200
        assert client.get(f"{ADMIN_PREFIX}/households", headers=admin).status_code == 200
    assert threadpool_calls == []
