"""What a responder's SMS link opens: one alarm as one member may see it. A read model,
built by `server.dispatch.responders` and shown by `server.routes.responder`."""

from __future__ import annotations

from dataclasses import dataclass

from carehub.alarm_lifecycle import AlarmKind, AlarmState

LinkAction = str  # view | accept | decline | arrived | key_safe


@dataclass(frozen=True)
class Contact:
    name: str
    relation: str
    phone: str


@dataclass(frozen=True)
class LinkContext:
    """Everything the link page may show one member about one alarm."""

    notification_id: str
    member_id: str
    member_language: str
    response: str | None  # accepted | declined (this member's answer)
    step: int | None
    alarm_id: str
    hub_id: str
    ref: str
    kind: AlarmKind
    state: AlarmState
    raised_at_ms: int
    time_zone: str
    accepted_by: str | None  # a member id
    accepted_by_name: str | None
    arrived_at_ms: int | None
    elder_name: str
    short_address: str
    address: str
    lat: float | None
    lon: float | None
    key_safe_sealed: str | None
    contacts: tuple[Contact, ...]
    medical_notes: str = ""  # shown, like the door details, only to who accepted
    care_level: int = 0
    policy_id: str | None = None  # the ladder's policy: numbers `step` as the console does

    @property
    def mine(self) -> bool:
        """This member accepted the alarm: the page opens the door details."""
        return self.accepted_by == self.member_id
