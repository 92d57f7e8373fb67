"""Issue 22: the PostgreSQL connections a server process may hold are set by
`CAREHUB_PG_POOL_SIZE` and `CAREHUB_PG_MAX_OVERFLOW`, so N processes can be sized to the
database's ``max_connections`` (docs/operations.md, "Connection limits")."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.pool import QueuePool

from carehub.settings import ServerSettings
from server.app import create_app
from server.runtime import ServerRuntime


def test_a_process_pool_is_the_size_its_settings_say(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAREHUB_PG_POOL_SIZE", "2")
    monkeypatch.setenv("CAREHUB_PG_MAX_OVERFLOW", "1")
    settings = ServerSettings(database_url=pg_url)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        runtime: ServerRuntime = client.app.state.runtime  # type: ignore[attr-defined]
        pool = runtime.store.engine.sync_engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.size() == 2
        assert pool._max_overflow == 1  # no public reader; what caps the connections
        assert client.get("/healthz").status_code == 200


def test_the_pool_settings_are_bounded() -> None:
    with pytest.raises(ValueError):
        ServerSettings(pg_pool_size=0)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        ServerSettings(pg_max_overflow=-1)  # type: ignore[call-arg]
