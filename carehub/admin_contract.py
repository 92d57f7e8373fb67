"""The admin API (duty dispatcher and tools): what its answers look like, defined once.

The server's admin routes answer with these models; FastAPI publishes them in the OpenAPI
document beside the hub API (`carehub.api_contract`). Admin requests carry
``Authorization: Bearer <CAREHUB_ADMIN_TOKEN>``.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from carehub.alarm_lifecycle import AlarmKind, AlarmState, Severity
from carehub.api_contract import API_PREFIX, ID_PATTERN, DeviceFlag, FaultKind

ADMIN_PREFIX = f"{API_PREFIX}/admin"
LIST_LIMIT_MAX = 1000
"""Largest ``limit`` of an admin listing."""


class NotificationStatus(enum.StrEnum):
    """An SMS: queued (or waiting for a retry), claimed for sending, accepted by the provider
    (sent), then as the provider's status callbacks say: delivered or undelivered; failed
    when the provider refused it every time before its deadline."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlarmSummary(_Answer):
    """One alarm in a listing. ``id`` is the server's; ``hub_alarm_id`` the hub's own."""

    id: str = Field(description="Server-made alarm id: use it with /admin/alarms/{alarm_id}.")
    hub_id: str
    hub_alarm_id: str = Field(description="The id the hub gave the alarm (unique per hub).")
    device_id: str
    kind: AlarmKind
    severity: Severity
    state: AlarmState
    seq: int | None
    raised_at_ms: int
    received_at_ms: int
    doctor_id: str | None
    repeat_count: int = Field(
        0, description="Uploads from the same device and kind that joined it while open."
    )
    last_repeat_at_ms: int | None = None
    repeat_hub_alarm_ids: list[str] = Field(
        default_factory=list, description="The hub's own ids of those repeats, oldest first."
    )
    device_flag: DeviceFlag | None = Field(
        None,
        description="Set when the device is not the hub's household's (unknown, or another "
        "home's): stored and dispatched all the same, for a person to check.",
    )


class NotificationView(_Answer):
    doctor_id: str | None = Field(description="The member told, or null for a contact.")
    contact_id: str | None = Field(description="The emergency contact told, if not a member.")
    purpose: str = Field(description="step-N (escalation step N), taken, cancelled, …")
    status: NotificationStatus
    response: str | None = Field(description="accepted | declined, when the member answered.")
    body: str
    sent_at_ms: int | None


class AlarmEventView(_Answer):
    kind: str = Field(
        description="state | state_ignored | step | sms_sent | declined | arrived | "
        "arrival_overdue | ladder_exhausted | device_flag"
    )
    state: AlarmState | None
    at_ms: int
    detail: str
    actor: str = Field(description="hub, system, or member:<id>: who did it.")


class AlarmDetail(AlarmSummary):
    """An alarm with its evidence, the SMS sent about it and its history."""

    elder_id: str
    event_ts_ms: int | None
    updated_at_ms: int
    details: dict[str, Any]
    accepted_by: str | None = Field(description="The member who accepted the alarm.")
    accepted_at_ms: int | None
    arrived_at_ms: int | None
    first_notified_at_ms: int | None
    resolved_at_ms: int | None
    outcome: str | None
    is_test: bool
    operator_at_ms: int | None = Field(
        None,
        description="When an operator first handled it: a triage outcome, an acknowledgement "
        "or an answered call (the answer-time KPI).",
    )
    triage_outcome: str | None = Field(
        None,
        description="The operator's outcome: accidental_press | no_help_needed | send_doctor "
        "| ambulance_called (docs/dispatch.md).",
    )
    claimed_by: str | None = Field(
        None, description="The console user who has the alarm (claimed it), if anyone."
    )
    claimed_at_ms: int | None = None
    notifications: list[NotificationView]
    events: list[AlarmEventView]


class HubView(_Answer):
    id: str
    elder_id: str
    online: bool
    last_seen_ms: int | None
    health: dict[str, Any] | None = Field(description="The last heartbeat's body.")


class FaultView(_Answer):
    id: int
    hub_id: str
    device_id: str = Field(
        description="The device, or the hub itself for `hub_offline` and `hub_refused`."
    )
    fault: FaultKind
    active: bool
    since_ms: int
    updated_at_ms: int
    detail: str
    report_id: str


# ------------------------------------------------------------ households and enrollment
# (installers and admins: the admin bearer token, or a console session of either role)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


Address = Field(default="", max_length=400, pattern=r"^[^\x00]*$", description="The home's.")


class HouseholdCreate(_Request):
    """A new home; elders and the contracted team may be assigned later."""

    id: str = Field(pattern=ID_PATTERN)
    address: str = Address
    team_id: str | None = Field(default=None, pattern=ID_PATTERN)


class TeamAssignment(_Request):
    team_id: str = Field(pattern=ID_PATTERN, description="The contracted care team.")


class HubMove(_Request):
    household_id: str = Field(pattern=ID_PATTERN, description="Where the hub now is.")


class SelftestSummary(_Answer):
    hub_id: str
    report_id: str
    passed: bool
    finished_at_ms: int
    failed_checks: list[str] = Field(description="Names of the checks that failed.")


class DeviceReleased(_Answer):
    """A device id freed by an installer or admin: unpaired, owned by no household."""

    device_id: str
    household_id: str | None = Field(description="The household that had it, if any.")


class HouseholdView(_Answer):
    id: str
    address: str
    team_id: str | None
    elder_ids: list[str]
    hub_ids: list[str]
    last_selftest: SelftestSummary | None = Field(description="None: never self-tested.")


class EnrollmentCode(_Answer):
    """Shown once: only its hash is stored. Give it to the installer for
    ``carehub hub enroll --code``; it works once, until ``expires_at_ms``."""

    code: str
    household_id: str
    expires_at_ms: int
