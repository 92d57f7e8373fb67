"""Configuration for each process, from ``CAREHUB_*`` environment variables and a TOML file.

Precedence: explicit arguments > environment > TOML file > defaults. The TOML file is named
by ``CAREHUB_CONFIG`` (or ``--config``); each process reads its own table (``[server]``,
``[hub]``), e.g.::

    [server]
    database_url = "sqlite+aiosqlite:////var/lib/carehub/server.db"
    notifier = "twilio"

    [hub]
    server_url = "https://carehub.example.org"
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from carehub.mqtt_contract import (
    CLOCK_AHEAD_TOLERANCE_MS,
    DEFAULT_BASE_TOPIC,
    DEFAULT_PAIRING_PASSWORD,
)

CONFIG_ENV = "CAREHUB_CONFIG"


class _TomlTable(PydanticBaseSettingsSource):
    """Reads one table of the TOML file named by ``CAREHUB_CONFIG``."""

    def __init__(self, settings_cls: type[BaseSettings], table: str) -> None:
        super().__init__(settings_cls)
        path = os.environ.get(CONFIG_ENV)
        self._data: dict[str, Any] = {}
        if path:
            try:
                with open(path, "rb") as f:
                    doc = tomllib.load(f)
            except (OSError, tomllib.TOMLDecodeError) as e:
                raise ValueError(f"cannot read config file {path}: {e}") from e
            section = doc.get(table, {})
            if not isinstance(section, dict):
                raise ValueError(f"[{table}] in {path} must be a table")
            self._data = section

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAREHUB_", extra="ignore")
    toml_table: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _TomlTable(settings_cls, cls.toml_table)


class MqttSettings(_Settings):
    """Where the hub's broker is (shared by `carehub hub` and `carehub sim`)."""

    toml_table: ClassVar[str] = "mqtt"
    mqtt_host: str = Field("127.0.0.1", description="MQTT broker host.")
    mqtt_port: int = Field(1883, description="MQTT broker port.")
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    base_topic: str = Field(DEFAULT_BASE_TOPIC, description="Root of all device topics.")


class ServerSettings(_Settings):
    """`carehub server`: the dispatch server."""

    toml_table: ClassVar[str] = "server"
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = Field(
        "sqlite+aiosqlite:///carehub-server.db",
        description="SQLAlchemy URL: sqlite+aiosqlite:///FILE or postgresql+asyncpg://…",
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL",
        description="SQLite fsync policy: FULL fsyncs every commit (survives power loss); "
        "NORMAL survives process crashes only, for more commits per second.",
    )
    notifier: Literal["console", "twilio"] = "console"
    twilio_account_sid: str = "AC00000000000000000000000000000000"
    twilio_auth_token: SecretStr = SecretStr("")
    twilio_from: str = Field("+10000000000", description="The SMS sender number.")
    twilio_api_base: str | None = Field(
        None, description="Replace https://api.twilio.com (tests aim it at a local server)."
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token of the dispatcher/admin API (until accounts exist)."
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Seals secrets at rest (elders' key-safe codes); at least 16 characters. "
        "Keep it with the backups: without it sealed codes cannot be read.",
    )
    public_base_url: str = Field(
        "http://127.0.0.1:8000",
        description="The server's address as phones and Twilio see it: accept links in SMS "
        "and webhook signatures are built on it.",
    )
    sms_max_per_number: int = Field(
        4,
        ge=1,
        le=1000,
        description="Texts one number gets in 15 min before the rest are merged into one "
        "message (and over the limit, one merged message a minute).",
    )
    merge_repeats: bool = Field(
        True,
        description="One open alarm per device and kind: a repeat joins the open alarm "
        "(counted, on its timeline) instead of starting another escalation. The benches "
        "turn it off to measure one dispatch per press.",
    )
    hub_offline_after_s: float = 90.0
    long_poll_max_s: float = 25.0
    console_insecure_cookies: bool = Field(
        False,
        description="Send the console's session cookie without `Secure`, for local http only "
        "(a browser never sends a `Secure` cookie over plain http).",
    )
    console_session_hours: float = Field(
        12.0, gt=0, description="A console login lasts this long (hours), then asks again."
    )
    console_login_max_failures: int = Field(
        5,
        ge=1,
        description="Failed console logins allowed per client address within "
        "`console_login_window_s` (further attempts from it are refused until it passes), "
        "and per username before its tries from new addresses are delayed.",
    )
    console_login_window_s: float = Field(300.0, gt=0)
    console_time_zone: str = Field(
        "Asia/Shanghai",
        description="The dispatch centre's time zone: the console shows times in it and "
        "counts its KPI days in it, as `carehub report kpi` does by default.",
    )
    console_login_delay_max_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Longest delay (s) between tries of one username from addresses it has "
        "not signed in from, after failures: 1 s, doubling per failure, up to this.",
    )
    enroll_code_ttl_s: float = Field(
        1800.0,
        gt=0,
        le=7 * 86400,
        description="An enrollment code expires this long after it is made.",
    )
    enroll_max_attempts_per_client: int = Field(
        10,
        ge=1,
        description="Enrollment attempts allowed from one source (an IPv4 address, an IPv6 "
        "/64) within `enroll_window_s` (further ones get 429 with Retry-After).",
    )
    enroll_max_attempts_per_household: int = Field(
        20,
        ge=1,
        description="Attempts allowed within the window with one household's codes that no "
        "longer work (used, expired); a live code always redeems. There is no global "
        "limit: a few sources could lock every installer out.",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or networks (CIDR) of the reverse proxies whose "
        "X-Forwarded-For / X-Forwarded-Proto are believed; from any other peer they are "
        "ignored. Empty: none (the client address is the TCP peer's).",
    )
    enroll_window_s: float = Field(600.0, gt=0)
    http_header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A request's head (request line and headers) must arrive within this "
        "many seconds of the connection or of its first byte, else 408 and the connection "
        "closes (a client trickling a head byte by byte holds nothing for long).",
    )
    http_body_timeout_s: float = Field(
        60.0, gt=0, description="A request's body must arrive within this long after its head."
    )
    http_keep_alive_s: float = Field(
        5.0, gt=0, description="An idle kept-alive connection closes after this long."
    )
    http_max_header_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest request head (431 above)."
    )
    http_max_body_bytes: int = Field(
        1024 * 1024,
        ge=512 * 1024,
        description="Largest request body (413 above; an alarm's details are at most 256 KiB).",
    )
    reply_code_hold_h: float = Field(
        12.0,
        gt=0,
        le=7 * 24,
        description='A member\'s reply code ("2a") keeps meaning its alarm this long (hours) '
        "after it was sent or the alarm closed: a late reply is answered that the alarm is "
        "over, and the code is not given to another alarm of theirs meanwhile.",
    )
    sms_lease_s: float = Field(
        30.0,
        gt=0,
        description="A message claimed for sending by a server process that then died is "
        "claimed again by another after this long (at-least-once SMS).",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        for entry in proxy_list(value):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value

    @field_validator("console_time_zone")
    @classmethod
    def _a_known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone (e.g. Asia/Shanghai, UTC)") from None
        return value


def proxy_list(trusted_proxies: str) -> list[str]:
    """`ServerSettings.trusted_proxies` as a list of addresses and networks."""
    return [p.strip() for p in trusted_proxies.split(",") if p.strip()]


class HubSettings(MqttSettings):
    """`carehub hub`: the gateway in the elder's home."""

    toml_table: ClassVar[str] = "hub"
    server_url: str = Field("http://127.0.0.1:8000", description="Dispatch server base URL.")
    hub_token: SecretStr = Field(
        SecretStr(""),
        description="This hub's bearer token; when empty it is read from `hub_credential_file`.",
    )
    hub_credential_file: Path = Field(
        Path("carehub-hub-credential.json"),
        description="Written by `carehub hub enroll` (mode 0600): server URL, hub id, token.",
    )
    hub_db: Path = Field(Path("carehub-hub.db"), description="The hub's durable store (SQLite).")
    mqtt_client_id: str = "carehub-hub"
    upload_timeout_s: float = 10.0
    retry_initial_s: float = 0.2
    retry_max_s: float = Field(30.0, description="Cap of the exponential upload backoff.")
    heartbeat_interval_s: float = 30.0
    dedup_window_s: float = Field(
        600.0, description="A repeated (device, seq) with a ts this close is the same event."
    )
    fall_cancel_window_s: float = Field(
        30.0, ge=0, description="After a detected fall, seconds the elder has to cancel it."
    )
    pending_ack_every_s: float = Field(
        5.0, gt=0, description="How often a pending fall re-tells the devices the seconds left."
    )
    device_offline_after_s: float = Field(
        180.0, gt=0, description="A device silent this long raises a device_offline fault."
    )
    battery_low_pct: float = Field(20.0, description="Battery below this raises battery_low.")
    device_clock_tolerance_s: float = Field(
        CLOCK_AHEAD_TOLERANCE_MS / 1000,
        gt=0,
        description="A device timestamp further than this from the hub's clock means the "
        "device's clock is wrong: its data is re-stamped onto the hub's clock (docs/mqtt.md).",
    )
    metrics_port: int | None = Field(
        None, description="Serve Prometheus metrics on this port (127.0.0.1) when set."
    )
    log_file: Path | None = Field(
        None,
        description="Log to this file instead of stderr, reopened when logrotate moves it "
        "(docs/install.md); by default the hub logs to stderr, which journald keeps and "
        "rotates under systemd.",
    )
    ha_discovery: bool = Field(
        False,
        description="Publish Home Assistant MQTT discovery and read-only device states "
        "(docs/mqtt.md, Home Assistant); never a path for alarms.",
    )
    ha_discovery_prefix: str = Field(
        "homeassistant",
        pattern=r"^[^#+\s/]([^#+\s]*[^#+\s/])?$",
        description="Home Assistant's discovery prefix (its MQTT setting).",
    )
    retention_days: float = Field(
        30.0, gt=0, description="Uploaded and finished records older than this are pruned."
    )
    min_free_disk_mb: float = Field(
        50.0, ge=0, description="Below this free disk, the oldest non-alarm outbox data goes."
    )
    outbox_max_entries: int = Field(
        200_000, gt=0, description="Outbox bound: beyond it the oldest non-alarm data goes first."
    )
    mqtt_redeliver_after_s: float = Field(
        1.0,
        ge=0,
        description="After the hub failed to handle a QoS-1 message (e.g. disk full), pause "
        "this long, then reconnect so the broker redelivers it.",
    )
    mqtt_max_handler_failures: int = Field(
        5,
        ge=1,
        description="A QoS-1 message whose handling failed this many times in a row is "
        "acknowledged and dropped with an error log (a poison message must not stall the hub).",
    )
    debug_handler_delay_s: float = Field(
        0.0, ge=0, description="Tests only: wait this long before handling each MQTT message."
    )
    hub_broker_dir: Path = Field(
        Path("/var/lib/carehub/broker"),
        description="The hub broker's security files (carehub.conf, passwd, acl, accounts.json"
        " with the hub's own MQTT password) and persistence: see docs/mqtt.md, Broker security.",
    )
    hub_broker_port: int = Field(1883, description="The broker's listener port.")
    hub_broker_host: str | None = Field(
        None, description="The listener's bind address (default: every interface, for devices)."
    )
    hub_broker_tls_certfile: Path | None = Field(
        None, description="With hub_broker_tls_keyfile: TLS on the listener (docs/mqtt.md)."
    )
    hub_broker_tls_keyfile: Path | None = None
    hub_broker_tls_cafile: Path | None = None
    hub_broker_run_as: str | None = Field(
        None, description="mosquitto's `user` line (the account it drops to when started as root)."
    )
    hub_broker_reload_command: str | None = Field(
        None,
        description="Command that makes mosquitto re-read passwd/acl (e.g. `systemctl reload "
        "carehub-broker`); default: SIGHUP to the pid in <hub_broker_dir>/mosquitto.pid.",
    )
    pairing_password: SecretStr = Field(
        SecretStr(DEFAULT_PAIRING_PASSWORD),
        description="Password of the shared pairing account (`_pair`) that unpaired devices use.",
    )
    observer_password: SecretStr | None = Field(
        None, description="When set, a read-only `_observer` broker account (Home Assistant)."
    )


class BrokerSettings(_Settings):
    """`carehub broker`: the MQTT broker beside the hub."""

    toml_table: ClassVar[str] = "broker"
    broker_data_dir: Path = Field(
        Path("carehub-broker"),
        description="Mosquitto's persistence directory (created if missing): the messages "
        "queued for the hub's persistent session survive a broker restart here.",
    )


class SettingsError(ValueError):
    """A setting has a value it cannot take; the message names it and its source."""


def load(cls: type[_Settings], config: Path | None = None, **overrides: Any) -> Any:
    """Build settings, optionally naming the TOML file explicitly. Raises `SettingsError`
    naming each bad setting as the operator wrote it (``CAREHUB_PORT``), not a traceback."""
    if config is not None:
        os.environ[CONFIG_ENV] = str(config)
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        raise SettingsError(describe(e)) from None


def describe(error: ValidationError) -> str:
    """One line per bad setting: its environment name, what is wrong, the value given."""
    lines = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"]) or "settings"
        given = problem.get("input")
        shown = "" if isinstance(given, dict) else f" (got {str(given)[:60]!r})"
        lines.append(f"{name} (CAREHUB_{name.upper()}): {problem['msg']}{shown}")
    return "; ".join(lines)
