"""The systemd units (and the logrotate snippet) that make a hub an appliance.

They ship as package data in `gateway/systemd/` with ``@NAME@`` placeholders (``$`` and
``%`` already mean something to systemd), and `carehub hub units` fills in this machine's
paths and user; docs/install.md explains each choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

STATE_DIR = Path("/var/lib/carehub")
"""The hub unit's StateDirectory= and WorkingDirectory=: relative paths in the settings
(e.g. the default store ``carehub-hub.db``) land here."""
LOG_DIR = Path("/var/log/carehub")
"""The hub unit's LogsDirectory=."""
TEMPLATES = (
    "carehub-hub.service",
    "carehub-broker.service",
    "carehub-ble.service",
    "carehub-hub.logrotate",
)

_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_PLACEHOLDER = re.compile(r"@[A-Z_]+@")


@dataclass(frozen=True)
class UnitParams:
    """What differs between machines. Paths are absolute, without whitespace (systemd would
    split them)."""

    carehub_bin: Path
    config_file: Path
    user: str = "carehub"
    group: str = "carehub"
    mosquitto_bin: Path = Path("/usr/sbin/mosquitto")
    broker_dir: Path = STATE_DIR / "broker"
    hub_writes: tuple[Path, ...] = field(default_factory=tuple)
    """Directories the hub writes outside its state and log directories (ReadWritePaths=)."""

    def __post_init__(self) -> None:
        for name in ("user", "group"):
            if not _USER.match(getattr(self, name)):
                raise ValueError(f"{name} {getattr(self, name)!r} is not a valid system {name}")
        for name in ("carehub_bin", "config_file", "mosquitto_bin", "broker_dir"):
            _check_path(name, getattr(self, name))
        for path in self.hub_writes:
            _check_path("hub_writes", path)


def _check_path(name: str, path: Path) -> None:
    if not path.is_absolute() or re.search(r"\s", str(path)):
        raise ValueError(f"{name} must be an absolute path without spaces, got {str(path)!r}")


def hub_writes(hub_db: Path, log_file: Path | None = None) -> tuple[Path, ...]:
    """The directories of the hub's store and file log that lie outside its state and log
    directories (relative paths are inside: they resolve against the state directory)."""
    dirs: list[Path] = []
    for path in (hub_db, log_file):
        if path is None:
            continue
        parent = (STATE_DIR / path).parent  # an absolute `path` replaces STATE_DIR
        if not (parent.is_relative_to(STATE_DIR) or parent.is_relative_to(LOG_DIR)):
            if parent not in dirs:
                dirs.append(parent)
    return tuple(dirs)


def render(params: UnitParams) -> dict[str, str]:
    """File name → content of each unit and snippet, filled in."""
    values = {
        "@CAREHUB_BIN@": str(params.carehub_bin),
        "@CONFIG_FILE@": str(params.config_file),
        "@USER@": params.user,
        "@GROUP@": params.group,
        "@MOSQUITTO_BIN@": str(params.mosquitto_bin),
        "@BROKER_DIR@": str(params.broker_dir),
        "@LOG_DIR@": str(LOG_DIR),
        "@READ_WRITE_PATHS@": "\n".join(f"ReadWritePaths={p}" for p in params.hub_writes)
        or "# ReadWritePaths=: none needed, the hub writes only in its state and log directories",
    }
    files = {}
    for name in TEMPLATES:
        text = resources.files("gateway").joinpath("systemd", name).read_text()
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        left = _PLACEHOLDER.search(text)
        assert left is None, f"{name}: placeholder {left.group()} not filled in"
        files[name] = text
    return files
