"""What a timeline entry says, in the reader's language: the stored detail of a system
event (``"accepted via link"``, ``"step 2: li, wu"``, ``"li: SM81f…"``) becomes words of the
catalogue, member ids become names, and message SIDs and policy ids (internal) are left out.
A note or call-back is the author's own text, shown as written."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from server.console.alarm_detail import TimelineEntry
from server.console.checklists import CHECKLIST_EVENT, ChecklistRecord, decode, words
from server.dispatch.eta import ETA_EVENT, eta_minutes
from server.escalation import EscalationPolicy, StepNumber, step_number
from server.triage import TriageOutcome

Translate = Callable[..., str]
"""A `server.catalogue.Translator`: ``t(key, **params)``."""

_STEP = re.compile(r"^step (\d+): (.*)$")
_REPEAT = re.compile(r"\(×(\d+)\)")
VIA = ("link", "sms", "console")
TRIAGE = frozenset(o.value for o in TriageOutcome)


def step_text(t: Translate, n: StepNumber) -> str:
    """ "step 2", or "step 2 (repeat 1)" on a repeat of the ladder."""
    label = t("step.n", n=n.step)
    return label if n.round == 1 else label + " " + t("step.round", n=n.round - 1)


def step_label(t: Translate, policy: EscalationPolicy | None, position: int) -> str:
    """`step_text` of the 0-based `position` on `policy`'s ladder (counted from 1 without
    a policy)."""
    if policy is None:
        return step_text(t, StepNumber(position + 1, 1))
    return step_text(t, step_number(policy, position))


_REASONS = (
    (re.compile(r"^red NEWS2 sub-score \(([\w, ]+)\) for (\d+) s"), "reason.red"),
    (re.compile(r"^red NEWS2 sub-score \(([\w, ]+)\) most of (\d+) s"), "reason.recurrent"),
    (re.compile(r"^NEWS2 total >= (\d+) for (\d+) s"), "reason.total"),
    (re.compile(r"^temperature >= ([\d.]+) °C for (\d+) s"), "reason.fever"),
)


def reason_text(t: Translate, reason: str) -> str:
    """The vital-sign detector's reason (edge/vital_signs.py speaks English) in the reader's
    language: its known forms are rebuilt from the catalogue with the channels named, an
    unknown one is shown as the detector wrote it."""
    for pattern, key in _REASONS:
        m = pattern.match(reason)
        if m is None:
            continue
        what, seconds = m.groups()
        if key in ("reason.red", "reason.recurrent"):
            what = ", ".join(t("sign." + c.strip()) for c in what.split(","))
        text = t(key, what=what, s=seconds)
        if "nothing backs it" in reason:
            return text + " " + t("reason.doubt_alone")
        return text + (" " + t("reason.doubt") if "signal in doubt" in reason else "")
    return reason


def checklist_text(t: Translate, record: ChecklistRecord) -> str:
    """ "done: Called the elder, Called the family · not done: A responder is on the way"."""
    parts = []
    for label, keys in (("checklist.done", record.done), ("checklist.missed", record.missed)):
        if keys:
            parts.append(f"{t(label)}: {', '.join(words(t, k) for k in keys)}")
    return " · ".join(parts)


def actor_label(t: Translate, actor: str, names: Mapping[str, str]) -> str:
    """``member:li`` → Dr Li; ``console:disp`` → disp; ``system``/``hub`` → a word."""
    if actor.startswith("member:"):
        member = actor.removeprefix("member:")
        return names.get(member, member)
    if actor.startswith("console:"):
        return actor.removeprefix("console:")
    return t("actor." + actor) if actor else ""


def _via(t: Translate, detail: str) -> str:
    via = detail.rsplit("via ", 1)[-1].split(":", 1)[0].strip()
    return t("via." + via) if via in VIA else ""


def describe(
    t: Translate,
    e: TimelineEntry,
    names: Mapping[str, str],
    policy: EscalationPolicy | None,
) -> str:
    """The entry's detail as the reader should see it ("" when there is nothing to add)."""
    d = e.detail
    if e.kind == "sms":
        purpose = e.sms_purpose or ""
        if e.sms_family:
            why = t("purpose.family")
        elif purpose.startswith("step-") and e.sms_position is not None:
            why = step_label(t, policy, e.sms_position)
        else:
            why = t("purpose." + purpose.split("-", 1)[0])
        answer = f" · {t('response.' + e.sms_response)}" if e.sms_response else ""
        return f"{e.sms_to} ({why}){answer}"
    if e.kind in ("note", "callback"):
        return d
    if e.kind == "step":
        m = _STEP.match(d)
        if m is None:
            return ""
        ids = [i.strip() for i in m.group(2).replace("+ dispatcher", "").split(",")]
        who = [names.get(i, i) for i in ids if i and i != "nobody"]
        return f"{step_label(t, policy, int(m.group(1)))}: {', '.join(who) or t('tl.nobody')}"
    if e.kind == "sms_sent":
        member = d.split(":", 1)[0]
        return names.get(member, member)  # the provider's message SID is left out
    if e.kind == "triage" or (e.kind == "state" and d in TRIAGE):
        return t("triage." + d)  # the operator's outcome, and the state it led to
    if e.kind == "device_flag":
        device, _, flag = d.rpartition(": ")
        return f"{device}: {t('flag.' + flag)}" if device else d
    if e.kind in ("operator_first", "operator_unanswered"):
        return d  # how long the console rings first ("30 s")
    if e.kind == "state":
        if d.startswith("outcome: "):
            return t("outcome." + d.removeprefix("outcome: "))
        if d.startswith("accepted via"):
            return _via(t, d)
        return "" if e.actor in ("server", "system") else d
    if e.kind in ("declined", "arrived"):
        return _via(t, d)
    if e.kind == "assigned":
        return d.removeprefix("to ")
    if e.kind == ETA_EVENT:
        minutes = eta_minutes(d)
        return t("tl.eta", n=minutes) if minutes is not None else ""
    if e.kind == "arrival_overdue":
        return d
    if e.kind == "checked":
        return words(t, d)
    if e.kind == CHECKLIST_EVENT:
        return checklist_text(t, decode(d))
    if e.kind == "claimed":
        return t("tl.from", who=d.removeprefix("from ")) if d else ""
    if e.kind == "repeat":
        m = _REPEAT.search(d)
        text = t("tl.repeat", n=m.group(1)) if m else ""
        return text + (f" · {t('severity.critical')}" if "now critical" in d else "")
    return ""  # ladder_exhausted, severity_raised: a policy id, internal
