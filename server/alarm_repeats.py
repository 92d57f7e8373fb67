"""One open alarm per device and kind: a repeat joins the alarm that is already open.

An elder who presses the call button five times in a panic, or a wearable that keeps
finding the same low SpO2, must not start five escalation ladders and five streams of
SMS; the dispatcher must still see that it happened again. So, as in mature IoT alarm
models (ThingsBoard's "one active alarm per originator and type"), an upload whose device
and kind match an alarm that is neither resolved nor cancelled is recorded as a repeat of
it: the alarm's repeat count and last-repeat time move, its timeline gains a line, and the
hub's own id for the repeat is answered with the open alarm's state from then on.

A test alarm (the installer's self-test) never joins a real one, nor a real one a test.
A critical repeat of a warning raises the open alarm to critical: the alarm then needs the
urgent ladder, which the dispatcher starts (`DispatchStore.raise_severity`).
"""

from __future__ import annotations

from dataclasses import dataclass

from carehub.alarm_lifecycle import Severity


@dataclass(frozen=True)
class OpenAlarm:
    """The alarm a new upload could join."""

    alarm_id: str
    severity: Severity
    repeats: int


@dataclass(frozen=True)
class Joined:
    """The upload is a repeat of ``alarm_id``; ``raised`` when it lifts a warning to critical."""

    alarm_id: str
    severity: Severity
    repeats: int
    raised: bool


def join(open_alarm: OpenAlarm | None, severity: Severity) -> Joined | None:
    """What a new upload of ``severity`` does: join the open alarm, or (None) open its own."""
    if open_alarm is None:
        return None
    raised = open_alarm.severity is Severity.WARNING and severity is Severity.CRITICAL
    return Joined(
        open_alarm.alarm_id,
        Severity.CRITICAL if raised else open_alarm.severity,
        open_alarm.repeats + 1,
        raised,
    )
