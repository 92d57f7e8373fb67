"""The systemd units and logrotate snippet of an appliance hub: what they promise, that
systemd and logrotate accept them (where installed), and `carehub hub units` writing them."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from carehub import logs
from gateway.units import STATE_DIR, UnitParams, hub_writes, render

CAREHUB = Path(sys.executable).with_name("carehub")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
LOGROTATE = shutil.which("logrotate") or (
    "/usr/sbin/logrotate" if Path("/usr/sbin/logrotate").exists() else None
)
needs_systemd = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed")


def directives(unit: str) -> dict[str, list[str]]:
    """`Section.Key` → its values, in order (a key may repeat in systemd units)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in unit.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def params(**overrides: object) -> UnitParams:
    values: dict[str, object] = {
        "carehub_bin": CAREHUB.absolute(),
        "config_file": Path("/etc/carehub/carehub.toml"),
    }
    return UnitParams(**{**values, **overrides})  # type: ignore[arg-type]


def test_the_hub_unit_restarts_always_with_a_watchdog_as_a_sandboxed_user() -> None:
    hub = directives(render(params())["carehub-hub.service"])
    one = {key: values[-1] for key, values in hub.items()}
    config = "/etc/carehub/carehub.toml"
    assert one["Service.ExecStart"] == f"{CAREHUB.absolute()} hub --config {config}"
    expected = {
        "Service.Type": "notify",
        "Service.NotifyAccess": "main",
        "Service.Restart": "always",
        "Service.User": "carehub",
        "Service.StateDirectory": "carehub",
        "Service.LogsDirectory": "carehub",
        "Service.WorkingDirectory": str(STATE_DIR),
        "Service.ProtectSystem": "strict",
        "Service.ProtectHome": "yes",
        "Service.NoNewPrivileges": "yes",
        "Service.PrivateTmp": "yes",
        "Service.PrivateDevices": "yes",
        "Service.CapabilityBoundingSet": "",
        "Service.RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "Unit.StartLimitIntervalSec": "0",
    }
    assert {k: one.get(k) for k in expected} == expected
    assert int(one["Service.WatchdogSec"]) >= 10
    assert "@system-service" in hub["Service.SystemCallFilter"]
    assert one["Service.MemoryMax"].endswith("M")
    assert "Service.ReadWritePaths" not in hub  # the store is in the state directory


def test_the_bluetooth_bridge_unit_runs_hub_ble_beside_bluez_as_the_hubs_user() -> None:
    """`carehub hub ble` as a service: after BlueZ and the broker, in BlueZ's D-Bus group,
    restarted always, sandboxed as the hub is."""
    ble = directives(render(params())["carehub-ble.service"])
    one = {key: values[-1] for key, values in ble.items()}
    config = "/etc/carehub/carehub.toml"
    assert one["Service.ExecStart"] == f"{CAREHUB.absolute()} hub ble --config {config}"
    after = set(" ".join(ble["Unit.After"]).split())
    assert {"bluetooth.service", "carehub-broker.service"} <= after
    expected = {
        "Service.Restart": "always",
        "Service.User": "carehub",
        "Service.SupplementaryGroups": "bluetooth",
        "Service.ProtectSystem": "strict",
        "Service.PrivateDevices": "yes",
        "Service.NoNewPrivileges": "yes",
        "Service.RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "Unit.StartLimitIntervalSec": "0",
    }
    assert {k: one.get(k) for k in expected} == expected


def test_the_broker_unit_runs_the_generated_config_and_sees_only_its_directory() -> None:
    broker = directives(
        render(params(mosquitto_bin=Path("/usr/sbin/mosquitto")))["carehub-broker.service"]
    )
    one = {key: values[-1] for key, values in broker.items()}
    assert one["Service.ExecStart"] == "/usr/sbin/mosquitto -c /var/lib/carehub/broker/carehub.conf"
    assert one["Service.ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["Service.Restart"] == "always"
    assert one["Service.TemporaryFileSystem"] == "/var/lib/carehub:ro"
    assert one["Service.BindPaths"] == "/var/lib/carehub/broker"
    assert one["Unit.Conflicts"] == "mosquitto.service"


def test_the_hub_may_write_only_where_its_store_and_log_are() -> None:
    assert hub_writes(Path("carehub-hub.db")) == ()
    assert hub_writes(Path("/var/lib/carehub/db/hub.db"), Path("/var/log/carehub/hub.log")) == ()
    assert hub_writes(Path("/data/carehub/hub.db"), Path("/data/carehub/hub.log")) == (
        Path("/data/carehub"),
    )
    hub = directives(render(params(hub_writes=(Path("/data/carehub"),)))["carehub-hub.service"])
    assert hub["Service.ReadWritePaths"] == ["/data/carehub"]


@pytest.mark.parametrize(
    "bad",
    [
        {"user": "Robert'); DROP"},
        {"config_file": Path("relative.toml")},
        {"carehub_bin": Path("/opt/my venv/bin/carehub")},
        {"hub_writes": (Path("/data/a b"),)},
    ],
)
def test_values_systemd_would_misread_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be|not a valid"):
        params(**bad)


def _write_units(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CAREHUB), "hub", "units", "--out", str(tmp_path / "units"), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("CAREHUB_")},
    )


@needs_systemd
def test_systemd_accepts_the_written_units(tmp_path: Path) -> None:
    """`systemd-analyze verify` checks every directive and that ExecStart exists: it points at
    this environment's real carehub script (and mosquitto, where installed)."""
    config = tmp_path / "carehub.toml"
    config.write_text('[hub]\nhub_db = "/srv/carehub/hub.db"\n')
    done = _write_units(tmp_path, "--config", str(config), "--mosquitto", sys.executable)
    assert done.returncode == 0, done.stderr
    units = tmp_path / "units"
    hub_unit = (units / "carehub-hub.service").read_text()
    assert f"ExecStart={CAREHUB.absolute()} hub --config {config}" in hub_unit
    assert "ReadWritePaths=/srv/carehub" in hub_unit
    names = [str(units / n) for n in ("carehub-hub.service", "carehub-broker.service")]
    names.append(str(units / "carehub-ble.service"))
    verify = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", *names], capture_output=True, text=True, timeout=60
    )
    complaints = [line for line in verify.stderr.splitlines() if str(units) in line]
    assert verify.returncode == 0 and not complaints, verify.stderr
    # and verify does catch a mistake, so the check above means something
    (units / "typo.service").write_text(hub_unit.replace("WatchdogSec=", "WatchdogSecs="))
    typo = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(units / "typo.service")], capture_output=True, text=True
    )
    assert "Unknown key 'WatchdogSecs'" in typo.stderr


@needs_systemd
@pytest.mark.parametrize(
    "unit", ["carehub-hub.service", "carehub-broker.service", "carehub-ble.service"]
)
def test_the_units_sandbox_is_rated_ok_by_systemd(tmp_path: Path, unit: str) -> None:
    for name, text in render(params(mosquitto_bin=Path(sys.executable))).items():
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", str(tmp_path / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in done.stderr and done.returncode != 0:
        pytest.skip("this systemd-analyze cannot rate unit files offline (systemd < 250)")
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    assert level, done.stdout + done.stderr
    assert float(level.group(1)) <= 2.0, done.stdout  # 1.4 when written; 9.6 is unconfined


@pytest.mark.skipif(LOGROTATE is None or os.geteuid() != 0, reason="needs logrotate, as root")
def test_logrotate_rotates_the_file_log_and_the_hub_keeps_writing(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    log_dir.mkdir(mode=0o750)
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    snippet = render(params(user=user, group=group))["carehub-hub.logrotate"]
    conf = tmp_path / "carehub-hub"
    conf.write_text(snippet.replace("/var/log/carehub/", f"{log_dir}/"))
    logs.setup("INFO", "hub", log_dir / "hub.log")
    try:
        logging.getLogger("gateway.test").info("before the rotation")
        rotate = subprocess.run(
            [LOGROTATE, "--force", "--state", str(tmp_path / "state"), str(conf)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert rotate.returncode == 0, rotate.stderr
        logging.getLogger("gateway.test").info("after the rotation")
    finally:
        logs.setup("INFO")
    assert "before the rotation" in (log_dir / "hub.log.1").read_text()
    assert "after the rotation" in (log_dir / "hub.log").read_text()


def _bytes(systemd_size: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    return int(systemd_size[:-1]) * units[systemd_size[-1]]


def test_the_hub_starts_once_the_clock_is_set_and_the_broker_has_room_for_its_queue() -> None:
    """A Pi has no clock: the hub is ordered after time-set (the last saved time) and
    time-sync (NTP, when the installer enables a wait for it), without pulling them in.
    The broker's MemoryMax is above what it holds with the hub's queue full."""
    from gateway.broker_auth import QUEUE_MEMORY_BYTES

    files = render(params())
    hub = directives(files["carehub-hub.service"])
    after = " ".join(hub["Unit.After"]).split()
    assert {"time-set.target", "time-sync.target", "carehub-broker.service"} <= set(after)
    assert "time-sync.target" not in " ".join(hub.get("Unit.Wants", []))  # systemd.special(7)
    broker = directives(files["carehub-broker.service"])
    assert _bytes(broker["Service.MemoryMax"][-1]) > QUEUE_MEMORY_BYTES
