"""The hub ↔ server HTTP API: paths and JSON bodies, defined once.

The server's routes and the hub's uplink client both import these models; FastAPI publishes
them as OpenAPI at ``/openapi.json`` and `docs/api.md` summarises them. Every hub request
carries ``Authorization: Bearer <hub token>``.

Idempotency: alarm ids (``alarm_id``) and state-report ids (``report_id``) are made on the
hub, so a retried request never creates a second record; the server answers a repeat with
the record it already has. Both are scoped to the hub: another hub may use the same ids.

Inputs are checked here, at the edge, so that no single request can make the server fail
(and a hub retry it forever, blocking the alarms behind it): every integer is bounded to
what a 64-bit column holds, text may not contain NUL, and numbers must be finite, also
inside ``details``. Numbers and booleans are JSON's: ``true`` is not the count 1, nor
``"1"`` a number (pydantic's lax mode would take both).
"""

from __future__ import annotations

import enum
import hashlib
import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from carehub.alarm_lifecycle import AlarmKind, AlarmState, Severity
from carehub.mqtt_contract import (
    ACC_RANGE,
    DEVICE_ID_PATTERN,
    HZ_RANGE,
    MAX_FRAME_SAMPLES,
    RESPONDER_MAX_CHARS,
)

API_PREFIX = "/api/v1"
ALARMS_PATH = f"{API_PREFIX}/alarms"
ALARM_REPORTS_PATH = f"{API_PREFIX}/alarm-reports"
ALARM_UPDATES_PATH = f"{API_PREFIX}/alarm-updates"
HUB_CONFIG_PATH = f"{API_PREFIX}/hub/config"
HUB_HEARTBEAT_PATH = f"{API_PREFIX}/hub/heartbeat"
FAULTS_PATH = f"{API_PREFIX}/faults"
ENROLL_PATH = f"{API_PREFIX}/hub/enroll"
HUB_DEVICES_PATH = f"{API_PREFIX}/hub/devices"
"""PUT ``{HUB_DEVICES_PATH}/{device_id}`` registers a paired device, DELETE revokes it."""
SELFTESTS_PATH = f"{API_PREFIX}/hub/selftests"
CALLS_PATH = f"{API_PREFIX}/hub/calls"
SUMMARIES_PATH = f"{API_PREFIX}/hub/summaries"
"""Voice calls (`docs/voice.md`): GET long-polls this hub's calls, POST offers one; POST
``{CALLS_PATH}/{call_id}/answer`` and ``…/hangup``."""
HEALTH_PATH = "/healthz"

ID_PATTERN: str = DEVICE_ID_PATTERN.pattern
"""Hub-made ids (alarms, reports) and device ids: the MQTT contract's device id pattern."""
MAX_DETAILS_BYTES = 256 * 1024
"""Upper bound for an alarm's attached details (signal window, readings)."""
MAX_DETAILS_DEPTH = 8
"""Deepest nesting of lists and objects inside ``details``."""
MAX_INT64 = 2**63 - 1
INT64_END = 2**63
"""Bounds are written `lt=INT64_END`: a power of two, so a JSON number that a float rounds
to it is refused by the schema and the server alike."""
UPDATES_PAGE_MAX = 1000
"""Largest ``limit`` of a listing."""


def _json_number(value: Any) -> Any:
    """JSON Schema's numbers: ``30.0`` is the integer 30, but ``true`` and ``"30"`` are not
    numbers at all (pydantic's lax mode would take both)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON number")
    return value


_JsonNumber = BeforeValidator(_json_number)

Id = Annotated[str, Field(pattern=ID_PATTERN)]
EpochMs = Annotated[
    int, Field(ge=0, lt=10**14, description="Epoch milliseconds (UTC)."), _JsonNumber
]
"""As in the MQTT contract: before the year 5138."""
Seq = Annotated[
    int, Field(ge=0, lt=INT64_END, description="The device's event counter."), _JsonNumber
]
Count = Annotated[int, Field(ge=0, lt=2**31), _JsonNumber]
Cursor = Annotated[int, Field(ge=0, lt=INT64_END), _JsonNumber]
Text = Annotated[str, Field(max_length=200, pattern=r"^[^\x00]*$", description="No NUL.")]


class DeviceFlag(enum.StrEnum):
    """Why an alarm's device is not one of the uploading hub's household's. The alarm is
    stored and dispatched for the hub's household all the same (no alarm is refused for its
    device); the console shows the flag so the dispatcher checks who called."""

    UNKNOWN = "device_unknown"  # no household owns this device id
    FOREIGN = "device_foreign"  # another household owns it


class DeviceKind(enum.StrEnum):
    """What a paired device is."""

    BUTTON = "button"
    WEARABLE = "wearable"
    PENDANT = "pendant"
    FALL_RADAR = "fall_radar"  # Zigbee, through Zigbee2MQTT (docs/devices.md)
    MOTION_SENSOR = "motion_sensor"
    DOOR_SENSOR = "door_sensor"


DeviceFault = Literal["device_offline", "battery_low", "sensor_not_worn"]
"""A non-emergency device problem a hub reports."""
HubReportedFault = Literal["hub_store_damaged"]
"""A problem of the hub itself that the hub reports (`HubFaultReport`): its store was found
damaged, set aside and replaced by a fresh one, so alarms it held may be lost."""
HUB_STORE_DAMAGED: HubReportedFault = "hub_store_damaged"
HubFault = Literal["hub_offline", "hub_refused", "hub_store_damaged"]
"""A fault of a hub itself (``device_id`` is the hub's id): ``hub_offline``, raised by the
server when a hub's heartbeats stop; ``hub_refused``, raised by the server when a hub whose
credential was revoked (moved to another household) still calls: it may hold alarms nobody
has seen; ``hub_store_damaged``, reported by the hub about itself."""
HUB_OFFLINE: HubFault = "hub_offline"
HUB_REFUSED: HubFault = "hub_refused"
FaultKind = DeviceFault | HubFault
"""Every fault the server records."""


def _check_json(value: Any, depth: int = 0) -> None:
    """Refuse what a database cannot store: NaN/inf, huge integers, NUL or lone surrogates
    in text, deep nesting."""
    if depth > MAX_DETAILS_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DETAILS_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT64:
        raise ValueError("integers must fit in 64 bits")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    if isinstance(value, dict):
        for k, v in value.items():
            _check_json(k, depth + 1)
            _check_json(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_json(v, depth + 1)


def storable_details(value: Any, depth: int = 0) -> Any:
    """A copy of `value` that `Details` accepts: non-finite numbers and integers beyond
    64 bits become null, NUL characters and lone surrogates are dropped from text, and what
    lies deeper than `MAX_DETAILS_DEPTH` becomes null. The hub uploads evidence through
    this, so no odd value in a detector's output can stop an alarm from being stored."""
    if depth > MAX_DETAILS_DEPTH:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value if abs(value) <= MAX_INT64 else None
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "ignore").decode("utf-8")
    if isinstance(value, (dict, list, tuple)) and depth >= MAX_DETAILS_DEPTH:
        return None  # its contents would lie deeper than allowed
    if isinstance(value, dict):
        out = {
            storable_details(str(k), depth + 1): storable_details(v, depth + 1)
            for k, v in value.items()
        }
        if depth == 0 and window_problem(out.get("window")) is not None:
            out["window"] = None  # the alarm goes without its plot rather than refused
        return out
    if isinstance(value, (list, tuple)):
        return [storable_details(v, depth + 1) for v in value]
    return value


FALL_WINDOW_MAX_SAMPLES = MAX_FRAME_SAMPLES
"""Most samples in a fall alarm's ``details.window`` (the hub sends 2 s before the impact and
at most 5 s after, at 50 Hz: 350)."""
FALL_WINDOW_MAX_S = 30.0
"""Longest fall window, in seconds (samples / hz)."""

GForce = Annotated[float, Field(ge=ACC_RANGE.low, le=ACC_RANGE.high), _JsonNumber]


class FallWindow(BaseModel):
    """``details.window`` of an alarm: acceleration samples [x, y, z] in g at ``hz`` from
    ``t0_ms``, bounded as the MQTT contract bounds an IMU frame (`HZ_RANGE`, `ACC_RANGE`,
    `MAX_FRAME_SAMPLES`). Checked on upload, so what reads a stored window (the console's
    plot) has bounded work; ``null`` means no window. Other fields are kept as sent."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    hz: Annotated[float, Field(ge=HZ_RANGE.low, le=HZ_RANGE.high), _JsonNumber]
    t0_ms: EpochMs
    acc: list[tuple[GForce, GForce, GForce]] = Field(max_length=FALL_WINDOW_MAX_SAMPLES)

    @model_validator(mode="after")
    def _not_too_long(self) -> FallWindow:
        if len(self.acc) > FALL_WINDOW_MAX_S * self.hz:
            raise ValueError(f"longer than {FALL_WINDOW_MAX_S:g} s (samples / hz)")
        return self


def window_problem(window: Any) -> str | None:
    """Why `window` is not a `FallWindow` (one line: field and reason), or None."""
    if window is None:
        return None
    try:
        FallWindow.model_validate(window)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in ("window", *first["loc"]))
        return f"{where}: {first['msg']}"
    return None


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    _check_json(value)
    problem = window_problem(value.get("window"))
    if problem is not None:
        raise ValueError(problem)
    return value


Details = Annotated[dict[str, Any], AfterValidator(_storable)]


class _Body(BaseModel):
    """A request body: a field this server does not know is refused (422), never ignored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Reply(BaseModel):
    """A server's answer, read by hubs that may be older than the server: a field the hub does
    not know is ignored (forward compatible), so a server may add fields before its hubs are
    upgraded. The server itself only builds these from typed code."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class AlarmUpload(_Body):
    """An alarm raised on the hub. ``alarm_id`` is the idempotency key."""

    alarm_id: Id
    device_id: Id = Field(description="A device paired with this hub (see `HubConfig`).")
    kind: AlarmKind
    severity: Severity = Severity.CRITICAL
    seq: Seq | None = Field(default=None, description="The device event that raised it, if any.")
    raised_at_ms: EpochMs = Field(description="When the hub raised it, epoch ms.")
    event_ts_ms: EpochMs | None = Field(default=None, description="Device's own event time.")
    details: Details = Field(
        default_factory=dict,
        description="Kind-specific evidence: fall window, vital readings. Finite numbers,"
        f" no NUL, at most {MAX_DETAILS_DEPTH} levels deep, at most {MAX_DETAILS_BYTES} bytes;"
        " `window`, when present, is a `FallWindow`.",
    )
    test: bool = Field(
        default=False,
        strict=True,
        description="Raised by the installer's self-test: dispatched as a clearly marked test"
        " to the first step only, shown as a test in the console, never counted in KPIs.",
    )


class AlarmAccepted(_Reply):
    """The server's answer to an upload: the alarm as stored (new or already known)."""

    alarm_id: str
    state: AlarmState
    created: bool


class AlarmStateReport(_Body):
    """A state change decided on the hub (today: the elder cancelled). ``report_id`` dedups."""

    report_id: Id
    alarm_id: Id = Field(description="One of this hub's alarms.")
    state: Literal[AlarmState.CANCELLED, AlarmState.RESOLVED]
    at_ms: EpochMs
    reason: Text = ""


class AlarmStateAccepted(_Reply):
    alarm_id: str
    state: AlarmState


class AlarmUpdate(_Reply):
    """A state change of one of this hub's alarms, for the elder's feedback."""

    cursor: Cursor = Field(description="Pass the largest cursor seen as `after` next time.")
    alarm_id: str = Field(description="The hub's own alarm id.")
    state: AlarmState
    at_ms: int
    responder: str | None = Field(
        default=None,
        max_length=RESPONDER_MAX_CHARS,
        description="Who accepted the alarm (the member's display name), once someone has; "
        "the hub passes it to the elder's device with the `accepted` ack.",
    )


class AlarmUpdates(_Reply):
    updates: list[AlarmUpdate]
    cursor: Cursor


class DeviceConfig(_Reply):
    device_id: str
    kind: DeviceKind


WearableChannel = Literal["hr", "spo2", "rr", "temp", "sbp", "motion", "quality"]
"""A channel a wearable may report on the `vitals` topic (see `VitalsReading`)."""


LocalTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
"""A wall-clock time ``HH:MM`` in the centre's time zone (`CarePlan.time_zone`)."""


class CheckInPlan(_Reply):
    """The daily check-in (报平安) a care plan may ask for (docs/health-review.md): the first
    press of a call button inside the window is the check-in (acked `checked_in`, nobody is
    called); any press after it is a call for help as always. No check-in by ``window_end``
    raises one welfare check (`AlarmKind.WELFARE`, ``details.welfare = "missed_check_in"``)."""

    window_start: LocalTime = "07:00"
    window_end: LocalTime = "10:00"
    movement_counts: bool = Field(
        default=False,
        strict=True,
        description="The pendant's ordinary movement inside the window is the check-in "
        "instead of a press; every press is then a call for help.",
    )


class CarePlan(_Reply):
    """What the hub needs to know about the elder: no names, no addresses."""

    spo2_scale2: bool = Field(
        default=False,
        strict=True,
        description="NEWS2 SpO2 scale 2: confirmed hypercapnic respiratory failure, target "
        "88-92 % set by a clinician.",
    )
    fall_sensitivity: Annotated[float, _JsonNumber] = Field(default=0.5, ge=0, le=1)
    on_oxygen: bool = Field(
        default=False,
        strict=True,
        description="On supplemental oxygen at home: NEWS2 adds 2 points, and on scale 2 high "
        "saturations score.",
    )
    wearable_channels: list[WearableChannel] | None = Field(
        default=None,
        max_length=7,
        description="The channels the elder's wearable reports; null = whatever arrives. "
        "Without motion and quality the vital-signs detector reasons from the values alone.",
    )
    time_zone: str = Field(
        default="Asia/Shanghai",
        max_length=64,
        description="The centre's IANA time zone: check-in windows, days of the daily summary "
        "and daytime/night for inactivity are its wall clock.",
    )
    check_in: CheckInPlan | None = Field(
        default=None, description="The daily check-in, when the care plan asks for one."
    )
    inactivity: bool = Field(
        default=True,
        strict=True,
        description="Welfare checks from the pendant's learnt daily rhythm (daytime stillness, "
        "a night-time rise with no return).",
    )


class HubConfig(_Reply):
    hub_id: str
    elder_id: str
    care_plan: CarePlan
    devices: list[DeviceConfig]


class HubHeartbeat(_Body):
    """Hub health, sent periodically."""

    uptime_s: Annotated[float, _JsonNumber] = Field(
        ge=0, le=1e12, description="Seconds since the hub started."
    )
    queue_depth: Count
    devices_online: Count
    version: str = Field(max_length=40, pattern=r"^[^\x00]*$")
    speakerphone: Literal["ok", "missing"] | None = Field(
        default=None,
        description="Voice calls (docs/voice.md): `missing` when the hub is set up for calls "
        "but its audio device or the voice extra is absent; null when not set up for calls.",
    )


class FaultReport(_Body):
    """A non-emergency problem with a device (offline, low battery, not worn)."""

    report_id: Id
    device_id: Id = Field(description="A device paired with this hub (see `HubConfig`).")
    fault: DeviceFault
    active: bool = Field(strict=True, description="True when raised, False when it cleared itself.")
    at_ms: EpochMs
    detail: Text = ""


class HubFaultReport(_Body):
    """A problem of the hub itself, posted where device faults are (stored under the hub's
    id as the device): its store was damaged and replaced by a fresh one."""

    report_id: Id
    fault: HubReportedFault
    active: bool = Field(strict=True, description="True when raised, False when it cleared itself.")
    at_ms: EpochMs
    detail: Text = ""


class EnrollRequest(_Body):
    """A new hub trades an installer's one-time enrollment code for its own credential.
    The only hub request made without a bearer token."""

    code: Annotated[str, Field(min_length=6, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
    hardware_id: Text = Field(description="The hub's serial or machine id, for the installer.")
    version: str = Field(max_length=40, pattern=r"^[^\x00]*$")


class EnrollGranted(_Reply):
    """The hub's identity and bearer token; the token is shown this once and stored hashed."""

    hub_id: str
    household_id: str
    token: str


class DeviceRegistration(_Body):
    """A device the hub has just paired (body of PUT ``HUB_DEVICES_PATH/{device_id}``)."""

    kind: DeviceKind
    hardware_id: Text = ""


class SelftestCheck(_Body):
    name: Text = Field(description="What was checked, e.g. `button pressed`, `heartbeat`.")
    device_id: Id | None = None
    passed: bool = Field(strict=True)
    detail: Text = ""


class SelftestReport(_Body):
    """The installer's self-test of a home, recorded on the household. ``report_id`` dedups."""

    report_id: Id
    started_at_ms: EpochMs
    finished_at_ms: EpochMs
    passed: bool = Field(strict=True)
    test_alarm_id: Id | None = Field(
        default=None, description="The hub's id of the test alarm sent through the server."
    )
    checks: list[SelftestCheck] = Field(max_length=100)


class WelfareReason(enum.StrEnum):
    """Why the hub raised a welfare check (an `AlarmUpload` of kind `welfare`, severity
    `warning`, ``details = {"welfare": <reason>, "usual": {...}, "today": {...}}``): it goes to
    the duty dispatcher (call the elder, then the contacts), never to the emergency ladder."""

    MISSED_CHECK_IN = "missed_check_in"
    INACTIVE_DAYTIME = "inactive_daytime"  # still for much longer than the elder's usual
    NIGHT_NO_RETURN = "night_no_return"  # up at night and not back to rest


SUMMARY_KEEP_DAYS_DEFAULT = 400
"""How long the server keeps daily summaries by default (`CAREHUB_SUMMARY_KEEP_DAYS`)."""

Minutes = Annotated[float, Field(ge=0, le=1440), _JsonNumber]
Hours = Annotated[float, Field(ge=0, le=24), _JsonNumber]


class DailySummary(_Body):
    """One elder's day as the hub saw it, aggregates only — never a raw stream (docs/
    health-review.md lists each field's definition). ``day`` is the centre's local date; the
    server keeps one summary per hub's elder and day (a repeat replaces nothing: idempotent).
    Null where the day gave no data for a field (a wearable not worn)."""

    day: Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    complete: bool = Field(
        strict=True, description="False when the hub was down for part of the day."
    )
    worn_h: Hours | None = Field(default=None, description="Hours the wearable was worn.")
    resting_hr_bpm: Annotated[float, Field(ge=20, le=250), _JsonNumber] | None = Field(
        default=None, description="10th percentile of heart rate at rest (motion low, worn)."
    )
    night_spo2_median: Annotated[float, Field(ge=50, le=100), _JsonNumber] | None = None
    night_spo2_below_90_min: Minutes | None = Field(
        default=None, description="Minutes with SpO2 below 90 % between 22:00 and 07:00."
    )
    rr_rest: Annotated[float, Field(ge=2, le=60), _JsonNumber] | None = Field(
        default=None, description="Median respiration rate at rest, breaths/min."
    )
    temp_rest: Annotated[float, Field(ge=30, le=43), _JsonNumber] | None = Field(
        default=None, description="Median temperature at rest, °C."
    )
    active_min: Minutes | None = Field(
        default=None, description="Minutes of movement seen by the pendant or motion sensors."
    )
    night_rises: Count | None = Field(
        default=None, description="Times the elder got up between 22:00 and 07:00."
    )
    presses: Count = 0
    check_ins: Count = 0
    near_falls: Count = Field(default=0, description="Impacts the fall detector dismissed.")
    falls: Count = 0
    battery_min_pct: Annotated[float, Field(ge=0, le=100), _JsonNumber] | None = Field(
        default=None, description="Lowest battery of the elder's devices that day."
    )


class SummaryAccepted(_Reply):
    day: str
    created: bool


class Problem(_Reply):
    """Error body of every 4xx answer: what went wrong and what to do."""

    detail: str


# ------------------------------------------------------------ voice calls (docs/voice.md)


class CallDirection(enum.StrEnum):
    FROM_HOME = "from_home"  # the hub offered (a press, a fall): it rings in the consoles
    TO_HOME = "to_home"  # an operator called the home from an open alarm


class CallState(enum.StrEnum):
    """A call's record on the server: what triage and the audit read."""

    RINGING = "ringing"  # offered, not answered yet
    ANSWERED = "answered"  # both SDPs exchanged: media flows peer to peer
    ENDED = "ended"  # see `CallEndReason`


class CallEndReason(enum.StrEnum):
    HANGUP_CONSOLE = "hangup_console"  # the operator hung up
    HANGUP_HOME = "hangup_home"  # the elder's cancel button during the call
    MAX_LENGTH = "max_length"
    SILENCE = "silence"  # nothing heard either way for the hub's silence limit
    NO_ANSWER = "no_answer"  # rang past the hub's ring limit
    NO_CONNECTION = "no_connection"  # answered, but no media path within the connect limit
    NETWORK_LOST = "network_lost"  # the media path dropped mid-call
    REFUSED = "refused"  # the hub may not open its microphone (no open alarm of this home)
    ALARM_CLOSED = "alarm_closed"  # the alarm was resolved or cancelled
    HUB_BUSY = "hub_busy"  # another call is running on the hub
    REPLACED = "replaced"  # the hub restarted or offered again: this call is gone


CALL_ENDED_SHOWN_S = 120
"""How long an ended call stays in a hub's call list, so a hub that missed the hang-up
while its long-poll was being re-opened still hears it."""
Sdp = Annotated[
    str,
    Field(min_length=1, max_length=20_000, pattern=r"^[^\x00]*$", description="An SDP blob."),
]


class CallOffer(_Body):
    """The hub offers a call for one of its alarms (`call_id` made on the hub)."""

    call_id: Id
    alarm_id: Id = Field(description="The hub's id of an alarm it uploaded.")
    sdp: Sdp = Field(description="Non-trickle: every ICE candidate is already in it.")
    test: bool = Field(default=False, strict=True, description="The installer's test call.")


class CallAnswer(_Body):
    """The hub's answer to an operator's call."""

    sdp: Sdp


class CallHangup(_Body):
    reason: CallEndReason


class CallView(_Reply):
    """One of this hub's calls as the hub sees it."""

    call_id: str
    alarm_id: str = Field(description="The hub's own alarm id.")
    direction: CallDirection
    state: CallState
    end_reason: CallEndReason | None = None
    sdp: str | None = Field(
        default=None,
        description="The console's side: its offer (to_home, ringing) or answer (from_home).",
    )
    test: bool = False


class CallList(_Reply):
    """This hub's calls not ended, and those ended in the last `CALL_ENDED_SHOWN_S`."""

    calls: list[CallView]
    digest: str = Field(description="Pass as `seen` to wait for the next change.")


def calls_digest(calls: list[CallView]) -> str:
    """What a hub passes back as `seen`: changes when a call appears, changes state or
    gets its SDP (server and hub compute it alike)."""
    text = "|".join(
        f"{c.call_id}:{c.state}:{c.end_reason or ''}:{len(c.sdp or '')}"
        for c in sorted(calls, key=lambda c: c.call_id)
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]
