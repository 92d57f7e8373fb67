"""Configuration for each process, from ``CAREHUB_*`` environment variables and a TOML file.

Precedence: explicit arguments > environment > TOML file > defaults. The TOML file is named
by ``CAREHUB_CONFIG`` (or ``--config``). Each setting has one place in it: the broker's
address and account in ``[mqtt]`` (``host``, ``port``, ``username``, ``password``,
``base_topic``: read by `carehub hub`, its installer commands and `carehub sim`), the rest
in its process's table, under its own name (``[server]``, ``[hub]``, ``[broker]``), e.g.::

    [server]
    database_url = "sqlite+aiosqlite:////var/lib/carehub/server.db"
    notifier = "twilio"

    [hub]
    server_url = "https://carehub.example.org"

    [mqtt]
    port = 18883

A key no table has, or one in the wrong table, is refused (`SettingsError`) naming the
closest valid key: a misspelt setting would otherwise be silently left at its default.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from carehub.api_contract import SUMMARY_KEEP_DAYS_DEFAULT
from carehub.mqtt_contract import (
    CLOCK_AHEAD_TOLERANCE_MS,
    DEFAULT_BASE_TOPIC,
    DEFAULT_PAIRING_PASSWORD,
)

CONFIG_ENV = "CAREHUB_CONFIG"


class SettingsError(ValueError):
    """A setting has a value it cannot take; the message names it and its source."""


class _TomlTable(PydanticBaseSettingsSource):
    """Reads the settings of one class from the TOML file named by ``CAREHUB_CONFIG``, each
    from its own table (`places`), after checking every key of the file."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = os.environ.get(CONFIG_ENV)
        self._data: dict[str, Any] = {}
        if not path:
            return
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SettingsError(f"cannot read config file {path}: {e}") from None
        problems = misplaced_keys(doc)
        if problems:
            raise SettingsError(f"{path}: " + "; ".join(problems))
        where = places()
        for name in settings_cls.model_fields:
            table, key = where[name]
            if key in doc.get(table, {}):
                self._data[name] = doc[table][key]

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAREHUB_", extra="ignore")
    toml_table: ClassVar[str] = ""
    """The table of the settings this class adds to its parent's."""
    toml_prefix: ClassVar[str] = ""
    """Left off the names of this class's own settings in its table: ``mqtt_port`` is
    ``port`` in ``[mqtt]`` (a subclass's settings keep theirs: ``[hub] mqtt_client_id``)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _TomlTable(settings_cls)


class IceServer(BaseModel):
    """A STUN or TURN server for voice calls (docs/voice.md), as WebRTC's RTCIceServer:
    ``{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}``."""

    urls: str = Field(pattern=r"^(stun|turn|turns):[^\s]+$")
    username: str | None = None
    credential: str | None = None


class TrendThresholds(BaseModel):
    """The family doctor's trend flags (`server.health_flags`; docs/health-review.md, "Trend
    flags"): windows and thresholds, each a setting (``[server.review_thresholds]`` in the
    config file, or ``CAREHUB_REVIEW_THRESHOLDS`` as JSON). A flag compares the median (a
    count: the mean or the sum) of the last `recent_days` with that of the `baseline_days`
    before them. Which defaults rest on the literature and which are CareHub's own choice is
    in the docs; none is a diagnosis."""

    model_config = {"extra": "forbid", "frozen": True}

    recent_days: int = Field(default=14, ge=3, le=60, description="The recent window, days.")
    baseline_days: int = Field(
        default=56, ge=7, le=300, description="The baseline before it, days."
    )
    min_recent_days: int = Field(
        default=7, ge=1, description="Days with data the recent window needs."
    )
    min_baseline_days: int = Field(
        default=14, ge=1, description="Days with data the baseline needs."
    )
    vitals_min_worn_h: float = Field(
        default=6.0,
        ge=0,
        le=24,
        description="A day's heart rate and SpO2 count if worn this long, h.",
    )
    resting_hr_rise_bpm: float = Field(default=10.0, gt=0, description="Resting HR rise, bpm.")
    t90_rise_min: float = Field(default=15.0, gt=0, description="Rise of night minutes below 90 %.")
    t90_floor_min: float = Field(default=30.0, ge=0, description="…and at least this many, min.")
    active_drop_share: float = Field(
        default=0.3, gt=0, lt=1, description="Fall of active minutes, share of the baseline."
    )
    night_rises_rise: float = Field(default=1.0, gt=0, description="Rise of mean rises per night.")
    night_rises_floor: float = Field(
        default=2.0, ge=0, description="…and at least this many a night."
    )
    near_falls_floor: int = Field(
        default=2, ge=1, description="Near-falls and falls in the window."
    )
    near_falls_ratio: float = Field(
        default=2.0, ge=1, description="…and this many times the baseline's count for as many days."
    )
    worn_low_h: float = Field(
        default=12.0, gt=0, le=24, description="A day worn less is 'left off'."
    )
    worn_window_days: int = Field(
        default=7, ge=1, le=60, description="The wearable's window, days."
    )
    worn_low_days: int = Field(
        default=3, ge=1, description="Days left off in it that raise the flag."
    )


class MqttSettings(_Settings):
    """Where the hub's broker is (shared by `carehub hub` and `carehub sim`): ``[mqtt]``."""

    toml_table: ClassVar[str] = "mqtt"
    toml_prefix: ClassVar[str] = "mqtt_"
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
    pg_pool_size: int = Field(
        5,
        ge=1,
        le=1000,
        description="PostgreSQL: connections each server process keeps open (its pool).",
    )
    pg_max_overflow: int = Field(
        10,
        ge=0,
        le=1000,
        description="PostgreSQL: connections a process may open beyond its pool under load "
        "(closed again when returned). A process holds at most pg_pool_size + "
        "pg_max_overflow + 1 (the LISTEN connection): size max_connections for all of them.",
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
    hub_auth_ttl_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="Hub tokens are checked against an in-memory cache, which reads the "
        "database's hub version again after this long: a token revoked by another server "
        "process works here for at most about this long (0: read on every request).",
    )
    long_poll_max_s: float = 25.0
    alarms_first: bool = Field(
        True,
        description="Under overload, answer maintenance requests (heartbeats, fault reports, "
        "hub config, console reads other than alarms) 503 with Retry-After before any work, "
        "so alarms never queue behind them (`server.admission`).",
    )
    maintenance_max_in_flight: int = Field(
        16,
        ge=1,
        description="Maintenance requests in flight in one server process at which it is "
        "overloaded: at 10 000 hubs' heartbeat rate each then waits 50-100 ms in the server "
        "(Little's law), as long as an alarm's whole latency target.",
    )
    overload_loop_lag_ms: float = Field(
        150.0, gt=0, description="Event-loop lag above which a server process is overloaded."
    )
    overload_hold_s: float = Field(
        5.0, ge=0, description="Still overloaded this long after the last lag over the limit."
    )
    maintenance_retry_after_s: int = Field(
        20,
        ge=1,
        le=60,
        description="A refusal's Retry-After is drawn from [this, twice this] seconds; keep "
        "twice this under hub_offline_after_s.",
    )
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
    console_incident_window_s: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="Alarms of one elder received within this many seconds of the one "
        "before are one incident on the console (a press, a fall and a vital-sign alarm "
        "of one event): one queue row, one screen of its alarms.",
    )
    summary_keep_days: int = Field(
        SUMMARY_KEEP_DAYS_DEFAULT,
        ge=1,
        le=3660,
        description="Hubs' daily summaries (docs/health-review.md) older than this many days "
        "are deleted (checked hourly); they go with the elder sooner.",
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
    voice_ice_servers: list[IceServer] = Field(
        default_factory=list,
        description="STUN/TURN servers the console's browser uses for voice calls (JSON list "
        "of RTCIceServer objects; docs/voice.md). Empty: host candidates only (one network).",
    )
    voice_console_ice_policy: Literal["all", "relay"] = Field(
        "all",
        description="`relay` makes the console's browser use only the TURN relay (tests, or "
        "a centre that must not expose its operators' addresses).",
    )
    review_thresholds: TrendThresholds = Field(
        default=TrendThresholds(),
        description="The family doctor's trend flags' windows and thresholds (docs/"
        "health-review.md): ``[server.review_thresholds]`` or CAREHUB_REVIEW_THRESHOLDS (JSON).",
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
    """`carehub hub`: the gateway in the elder's home (``[hub]``; its broker in ``[mqtt]``)."""

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
    merge_repeats: bool = Field(
        True,
        description="A press from a device whose button alarm is open joins that alarm "
        "(counted on it, acked with its state) instead of raising another. The benches and "
        "durability tests turn it off to follow each press to its own alarm.",
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
    zigbee2mqtt_topic: str | None = Field(
        None,
        description="Zigbee2MQTT's base topic (`zigbee2mqtt`) when it runs beside the hub on its"
        " broker: its supported devices are served (docs/devices.md); unset: no Zigbee.",
    )
    hub_broker_max_packet_bytes: int | None = Field(
        None,
        gt=0,
        description="The broker's max_packet_size when above the default (MAX_PAYLOAD_BYTES +"
        " 1 KiB): Zigbee2MQTT's retained device list outgrows it with a few devices"
        " (docs/devices.md); it then binds every client.",
    )
    zigbee2mqtt_password: SecretStr | None = Field(
        None,
        description="When set, `broker-config` writes a `_zigbee2mqtt` broker account with rights"
        " on the Zigbee2MQTT topic only.",
    )
    bluetooth: bool = Field(
        False,
        description="The hub has a Bluetooth adapter (BlueZ) and the `ble` extra: `hub pair`"
        " also pairs Bluetooth LE health devices in its window, `hub ble` runs the bridge"
        " (docs/devices.md). False: no Bluetooth code is loaded.",
    )
    voice_source: str | None = Field(
        None,
        description="Voice calls (docs/voice.md; needs the `voice` extra): the microphone, "
        "`alsa:DEVICE` (e.g. `alsa:default`, `alsa:plughw:1,0`) or an audio file played in a "
        "loop (tests). Unset: no calls, and no voice code is loaded.",
    )
    voice_sink: str | None = Field(
        None,
        description="The loudspeaker, `alsa:DEVICE` or a WAV file to write (tests); unset: "
        "the same ALSA device as `voice_source`.",
    )
    voice_ice_servers: list[IceServer] = Field(
        default_factory=list,
        description="STUN/TURN servers for the hub's calls (JSON list of RTCIceServer "
        "objects); a hub behind home NAT needs the centre's TURN relay (docs/voice.md).",
    )
    voice_max_call_s: float = Field(900.0, gt=0, description="A call ends after this long.")
    voice_silence_end_s: float = Field(
        120.0, gt=0, description="A call ends after this long with nothing heard either way."
    )
    voice_ring_s: float = Field(
        90.0, gt=0, description="An offered call nobody answered ends after this long."
    )
    voice_connect_s: float = Field(
        10.0, gt=0, description="An answered call with no media path after this long ends."
    )


class BrokerSettings(_Settings):
    """`carehub broker`: the MQTT broker beside the hub."""

    toml_table: ClassVar[str] = "broker"
    broker_data_dir: Path = Field(
        Path("carehub-broker"),
        description="Mosquitto's persistence directory (created if missing): the messages "
        "queued for the hub's persistent session survive a broker restart here.",
    )


SETTINGS_CLASSES: tuple[type[_Settings], ...] = (
    MqttSettings,
    ServerSettings,
    HubSettings,
    BrokerSettings,
)


def places() -> dict[str, tuple[str, str]]:
    """Each setting's one place in the TOML file: field name → (table, key). A class's own
    fields (not its parent's) go in its table."""
    found: dict[str, tuple[str, str]] = {}
    for cls in SETTINGS_CLASSES:
        parent = cls.__mro__[1]
        inherited = parent.model_fields if issubclass(parent, _Settings) else {}
        for name in cls.model_fields:
            if name not in inherited:
                prefix = cls.__dict__.get("toml_prefix", "")  # the class's own, not inherited
                found[name] = (cls.toml_table, name.removeprefix(prefix))
    return found


def misplaced_keys(doc: dict[str, Any]) -> list[str]:
    """What is wrong with a config file's keys: an unknown table, a key outside a table, a
    key in the wrong table, a key no table has (with the closest valid one)."""
    where = places()
    tables: dict[str, dict[str, str]] = {}
    for name, (table, key) in where.items():
        tables.setdefault(table, {})[key] = name
    home: dict[str, list[str]] = {}  # a key → the tables that have it
    for table, keys in sorted(tables.items()):
        for key in keys:
            home.setdefault(key, []).append(table)

    def tables_of(key: str) -> str:
        return " or ".join(f"[{t}]" for t in home[key])

    problems = []
    for table, section in doc.items():
        if not isinstance(section, dict):
            put = tables_of(table) if table in home else "its table"
            problems.append(f"{table} is outside any table: put it in {put}")
        elif table not in tables:
            problems.append(f"[{table}] is not a table" + _closest(table, list(tables), "[{}]"))
        else:
            for key in section:
                if key in tables[table]:
                    continue
                right = where.get(key)  # the key is a setting's full name
                if key in home:
                    problems.append(f"[{table}] {key} belongs in {tables_of(key)}")
                elif right is not None and right[0] == table:
                    problems.append(f"[{table}] {key} is called {right[1]} here")
                elif right is not None:
                    problems.append(f"[{table}] {key} belongs in [{right[0]}] as {right[1]}")
                else:
                    problems.append(
                        f"[{table}] {key} is not a setting" + _closest(key, list(tables[table]))
                    )
    return problems


def _closest(word: str, candidates: list[str], shape: str = "{}") -> str:
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {shape.format(match[0])}?" if match else ""


def misspelt_env(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """``CAREHUB_*`` variables that are no setting but nearly one (``CAREHUB_MQTT_PROT``):
    a typo would leave the setting at its default. Other ``CAREHUB_*`` names (the tools'
    own, e.g. ``CAREHUB_TEST_PG``) are left alone."""
    names = {name.upper() for cls in SETTINGS_CLASSES for name in cls.model_fields}
    found = []
    for variable in sorted(environ):
        suffix = variable.removeprefix("CAREHUB_")
        if suffix == variable or suffix in names or variable == CONFIG_ENV:
            continue
        close = difflib.get_close_matches(suffix, names, n=1, cutoff=0.8)
        if close:
            found.append(f"{variable} is not a setting; did you mean CAREHUB_{close[0]}?")
    return found


def load(cls: type[_Settings], config: Path | None = None, **overrides: Any) -> Any:
    """Build settings, optionally naming the TOML file explicitly. Raises `SettingsError`
    naming each bad setting as the operator wrote it (``CAREHUB_PORT``), not a traceback,
    and for a ``CAREHUB_*`` variable that is a misspelt setting."""
    if config is not None:
        os.environ[CONFIG_ENV] = str(config)
    typos = misspelt_env(os.environ)
    if typos:
        raise SettingsError("; ".join(typos))
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
