"""The hub ↔ server HTTP API: paths and JSON bodies, defined once.

The server's routes and the hub's uplink client both import these models; FastAPI publishes
them as OpenAPI at ``/openapi.json`` and `docs/api.md` summarises them. Every hub request
carries ``Authorization: Bearer <hub token>``.

Idempotency: alarm ids (``alarm_id``) and state-report ids (``report_id``) are made on the
hub, so a retried request never creates a second record; the server answers a repeat with
the record it already has.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from carehub.alarm_lifecycle import AlarmKind, AlarmState, Severity

API_PREFIX = "/api/v1"
ALARMS_PATH = f"{API_PREFIX}/alarms"
ALARM_REPORTS_PATH = f"{API_PREFIX}/alarm-reports"
ALARM_UPDATES_PATH = f"{API_PREFIX}/alarm-updates"
HUB_CONFIG_PATH = f"{API_PREFIX}/hub/config"
HUB_HEARTBEAT_PATH = f"{API_PREFIX}/hub/heartbeat"
FAULTS_PATH = f"{API_PREFIX}/faults"
HEALTH_PATH = "/healthz"

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
MAX_DETAILS_BYTES = 256 * 1024
"""Upper bound for an alarm's attached details (signal window, readings)."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlarmUpload(_Body):
    """An alarm raised on the hub. ``alarm_id`` is the idempotency key."""

    alarm_id: str = Field(pattern=ID_PATTERN)
    device_id: str = Field(pattern=ID_PATTERN)
    kind: AlarmKind
    severity: Severity = Severity.CRITICAL
    seq: int | None = Field(default=None, description="The device event that raised it, if any.")
    raised_at_ms: int = Field(ge=0, description="When the hub raised it, epoch ms.")
    event_ts_ms: int | None = Field(default=None, ge=0, description="Device's own event time.")
    details: dict[str, Any] = Field(
        default_factory=dict, description="Kind-specific evidence: fall window, vital readings."
    )


class AlarmAccepted(_Body):
    """The server's answer to an upload: the alarm as stored (new or already known)."""

    alarm_id: str
    state: AlarmState
    created: bool


class AlarmStateReport(_Body):
    """A state change decided on the hub (today: the elder cancelled). ``report_id`` dedups."""

    report_id: str = Field(pattern=ID_PATTERN)
    alarm_id: str = Field(pattern=ID_PATTERN)
    state: Literal[AlarmState.CANCELLED, AlarmState.RESOLVED]
    at_ms: int = Field(ge=0)
    reason: str = Field(default="", max_length=200)


class AlarmStateAccepted(_Body):
    alarm_id: str
    state: AlarmState


class AlarmUpdate(_Body):
    """A state change of one of this hub's alarms, for the elder's feedback."""

    cursor: int = Field(description="Pass the largest cursor seen as `after` next time.")
    alarm_id: str
    state: AlarmState
    at_ms: int


class AlarmUpdates(_Body):
    updates: list[AlarmUpdate]
    cursor: int


class DeviceConfig(_Body):
    device_id: str
    kind: Literal["button", "wearable", "pendant"]


class CarePlan(_Body):
    """What the hub needs to know about the elder: no names, no addresses."""

    spo2_scale2: bool = False
    fall_sensitivity: float = Field(default=0.5, ge=0, le=1)


class HubConfig(_Body):
    hub_id: str
    elder_id: str
    care_plan: CarePlan
    devices: list[DeviceConfig]


class HubHeartbeat(_Body):
    """Hub health, sent periodically."""

    uptime_s: float = Field(ge=0)
    queue_depth: int = Field(ge=0)
    devices_online: int = Field(ge=0)
    version: str = Field(max_length=40)


class FaultReport(_Body):
    """A non-emergency problem with a device (offline, low battery, not worn)."""

    report_id: str = Field(pattern=ID_PATTERN)
    device_id: str = Field(pattern=ID_PATTERN)
    fault: Literal["device_offline", "battery_low", "sensor_not_worn"]
    active: bool = Field(description="True when raised, False when it cleared itself.")
    at_ms: int = Field(ge=0)
    detail: str = Field(default="", max_length=200)


class Problem(_Body):
    """Error body: what went wrong and what to do."""

    detail: str
