"""harness/postgres.py and the PostgreSQL fixtures: the tests start their own PostgreSQL
(never the machine's), never skip for want of one, and under CI=true a PostgreSQL skip fails."""

from __future__ import annotations

import os
import pwd
import socket
import tempfile
from pathlib import Path

import pytest

from harness import postgres

pytest_plugins = ["pytester"]
CONFTEST = Path(__file__).with_name("conftest.py")


def _owner_uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))


def test_a_private_server_serves_fresh_databases_and_leaves_nothing_behind() -> None:
    with postgres.Postgres() as pg:
        assert pg.process is not None
        expected = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
        assert _owner_uid(pg.process.pid) == expected  # PostgreSQL refuses to run as root
        with postgres.fresh_database(pg.admin_url) as url:
            assert url.startswith(f"postgresql+asyncpg://postgres@127.0.0.1:{pg.port}/")
            postgres.psql(url, "create table t (x int); insert into t values (7)")
            assert postgres.psql(url, "select x from t") == [["7"]]
            name = url.rsplit("/", 1)[1]
        listed = postgres.psql(pg.admin_url, "select datname from pg_database")
        assert [name] not in listed  # dropped
        assert postgres.psql(pg.admin_url, "show fsync") == [["off"]]  # a test cluster
        workdir = pg.workdir
    assert not workdir.exists()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", pg.port), timeout=1):
        pass


@pytest.mark.skipif(bool(os.environ.get(postgres.ENV_URL)), reason="a developer's own server")
def test_the_tests_database_lives_in_a_private_cluster(pg_url: str) -> None:
    """Not the machine's own PostgreSQL (5432 here): a cluster in a temporary directory."""
    data = postgres.psql(pg_url, "show data_directory")[0][0]
    assert Path(data).is_relative_to(Path(tempfile.gettempdir()).resolve()), data
    assert ":5432/" not in pg_url


def _run(pytester: pytest.Pytester, test_source: str) -> pytest.RunResult:
    """Run `test_source` under the project's conftest, in this process."""
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_source)
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:xdist")


def test_without_postgresql_the_fixture_fails_instead_of_skipping(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        nowhere = f"postgresql://postgres@127.0.0.1:{s.getsockname()[1]}/x"
        monkeypatch.setenv(postgres.ENV_URL, nowhere)
        result = _run(pytester, "def test_on_postgresql(pg_url):\n    assert pg_url\n")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no PostgreSQL for the tests*not reachable*"])


@pytest.mark.parametrize("ci", ["true", ""], ids=["ci", "not-ci"])
def test_under_ci_a_postgresql_skip_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    result = _run(
        pytester,
        "import pytest\n"
        "def test_on_postgresql():\n    pytest.skip('PostgreSQL not reachable')\n"
        "def test_elsewhere():\n    pytest.skip('no display')\n",
    )
    if ci:
        result.assert_outcomes(failed=1, skipped=1)
        result.stdout.fnmatch_lines(["*where PostgreSQL tests must run*"])
    else:
        result.assert_outcomes(skipped=2)
