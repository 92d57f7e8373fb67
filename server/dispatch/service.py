"""The dispatch wing's one face: every route, and the console, moves an alarm through
`DispatchService`, never through the tables.

Each method runs in one order: decide (a pure rule: `server.dispatch.answers`,
`server.triage`, `server.reply_codes`), commit (one transaction of `DispatchStore` or, for
an upload, `ServerStore`), send (the messages that commit queued, through the escalator,
which records their outcomes), then notify (`ChangeSignal.alarms_changed`: the hub's
long-poll, the consoles). Outcomes come back as keys; the words are the caller's.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from carehub.alarm_lifecycle import AlarmState
from carehub.api_contract import AlarmUpload
from carehub.clock import Clock
from server.accept_link import LinkVerdict
from server.care_map import CareMap
from server.change_signal import ChangeSignal
from server.dispatch import responders
from server.dispatch.answers import Answer
from server.dispatch.escalator import Escalator
from server.dispatch.eta import EtaKey
from server.dispatch.link_view import LinkAction, LinkContext
from server.dispatch.queue import NOT_DELIVERED, notification_by_reply, record_delivery
from server.dispatch.store import DispatchStore, InTransaction
from server.reply_codes import CodedReply, Keyword, ReplyAction, parse_reply
from server.store import HubIdentity, ServerStore, Stored
from server.triage import LadderMove, TriageEffect, TriageOutcome

log = logging.getLogger(__name__)

REPLY_ACTIONS = {
    ReplyAction.ACCEPT: "accept",
    ReplyAction.DECLINE: "decline",
    ReplyAction.ARRIVED: "arrived",
}


class InboundKey(enum.StrEnum):
    """What came of an inbound SMS; the route says it (or nothing) in TwiML."""

    REPEATED = "repeated"  # Twilio retried a message already handled: no reply
    ANSWERED = "answered"  # a reply code's answer (`Inbound.answer`)
    NO_SUCH_CODE = "no_such_code"  # no open alarm holds the code (`Inbound.code`)
    OPTED = "opted"  # STOP or START: the provider confirms it itself
    HELP = "help"  # the help text, at most once an hour per number
    HELP_LIMITED = "help_limited"  # help was sent within the hour: no reply


@dataclass(frozen=True)
class Inbound:
    key: InboundKey
    language: str = "zh"
    code: int | None = None
    answer: Answer | None = None


class DispatchService:
    """Decide, commit, send, notify: the one way an alarm moves."""

    def __init__(
        self,
        store: ServerStore,
        dispatch: DispatchStore,
        escalator: Escalator,
        changes: ChangeSignal,
        clock: Clock,
    ) -> None:
        self._store = store
        self._dispatch = dispatch
        self._escalator = escalator
        self._changes = changes
        self._clock = clock

    async def care_map(self) -> CareMap:
        """The directory as dispatch sees it (`Escalator.care_map`)."""
        return await self._escalator.care_map()

    # ------------------------------------------------------------ the hub's side

    async def receive_alarm(self, hub: HubIdentity, upload: AlarmUpload) -> Stored:
        """Store an alarm (with its ladder, due now, in the same commit) and wake the
        escalator; a repeat that raised an open alarm's severity wakes it too."""
        stored = await self._store.store_alarm(hub, upload, self._clock.now_ms())
        if stored.joined is not None:
            if stored.joined.raised:
                self._escalator.kick()  # the ladder, due now, moves to the urgent policy
            await self._changes.alarms_changed()
        elif stored.created:
            self._escalator.kick()
            await self._changes.alarms_changed(hub.hub_id)
        return stored

    async def report_state(
        self,
        hub: HubIdentity,
        alarm_id: str,
        state: AlarmState,
        at_ms: int,
        report_id: str | None,
        reason: str = "",
    ) -> AlarmState:
        """A state decided on the hub (the elder cancelled): recorded, and the alarm's
        ladder made due now, so whoever was told hears of it. Raises `UnknownAlarm`."""
        new = await self._store.report_state(hub, alarm_id, state, at_ms, report_id, "hub", reason)
        await self._dispatch.alarm_changed(hub.hub_id, alarm_id, self._clock.now_ms())
        self._escalator.kick()
        await self._changes.alarms_changed(hub.hub_id)
        return new

    # ------------------------------------------------------------ responders

    async def open_link(self, ref: str, token: str) -> tuple[LinkVerdict, LinkContext | None]:
        """What an SMS link opens now (`server.dispatch.responders.open_link`)."""
        return await responders.open_link(self._dispatch, ref, token, self._clock.now_ms())

    async def record_view(self, notification_id: str, action: LinkAction) -> None:
        await responders.record_view(self._dispatch, notification_id, action, self._clock.now_ms())

    async def answer(self, notification_id: str, action: str, via: str) -> Answer:
        """A responder's accept / decline / arrived (by link, reply code, or phoned in to
        the console: `via`). Raises ValueError for another action."""
        care = await self._escalator.care_map()
        answer, msgs = await self._dispatch.answer(
            notification_id, action, self._clock.now_ms(), via, care
        )
        await self._escalator.send(msgs)
        self._escalator.kick()
        await self._changes.alarms_changed(*([answer.hub_id] if answer.hub_id else []))
        return answer

    async def give_eta(self, notification_id: str, minutes: int | None) -> EtaKey:
        """The accepting member's ETA in minutes, from the link page
        (`DispatchStore.give_eta`); the consoles are told."""
        key, hub_id = await self._dispatch.give_eta(notification_id, minutes, self._clock.now_ms())
        if key is EtaKey.RECORDED:
            await self._changes.alarms_changed(hub_id)
        return key

    async def inbound_sms(self, sid: str, phone: str, body: str) -> Inbound:
        """A member's text: a reply code (``1a`` / ``1d`` / ``1r``), STOP / START, or anything
        else (the help text, once an hour per number). Each MessageSid is handled once."""
        now = self._clock.now_ms()
        if not await responders.record_inbound(self._dispatch, sid, phone, body, now):
            log.info("inbound SMS %s already handled (Twilio retried)", sid)
            return Inbound(InboundKey.REPEATED)
        reply = parse_reply(body)
        language = await responders.member_language(self._dispatch, phone)
        if isinstance(reply, CodedReply):
            inbound, result = await self._coded(phone, reply, language)
            await responders.set_inbound_result(self._dispatch, sid, result)
            return inbound
        if reply in (Keyword.STOP, Keyword.START):
            await responders.set_opt_out(self._dispatch, phone, reply is Keyword.STOP, now)
            await responders.set_inbound_result(self._dispatch, sid, reply.value)
            log.info("inbound SMS %s: %s", sid, reply.value)
            return Inbound(InboundKey.OPTED, language)
        if await responders.claim_help(self._dispatch, sid, phone, now):
            return Inbound(InboundKey.HELP, language)
        await responders.set_inbound_result(self._dispatch, sid, "help-limited")
        return Inbound(InboundKey.HELP_LIMITED, language)

    async def _coded(self, phone: str, reply: CodedReply, language: str) -> tuple[Inbound, str]:
        n = await notification_by_reply(self._dispatch, phone, reply.number, self._clock.now_ms())
        if n is None:
            no_code = Inbound(InboundKey.NO_SUCH_CODE, language, reply.number)
            return no_code, f"no alarm {reply.number}"
        action = REPLY_ACTIONS[reply.action]
        answer = await self.answer(n.id, action, "sms")
        log.info("alarm %s: %s by SMS: %s", n.alarm_id, action, outcome(answer))
        answered = Inbound(InboundKey.ANSWERED, language, reply.number, answer)
        return answered, f"{action}: {answer.key}"

    async def delivery_status(
        self, provider_ref: str, status: str, notification_ids: Sequence[str]
    ) -> bool:
        """A provider's delivery callback; True when it changed something. Undelivered
        takes the member out of the step, so the escalator is woken at once; delivered
        changes no ladder (waking it was one empty pass per SMS)."""
        changed = await record_delivery(
            self._dispatch, provider_ref, status, self._clock.now_ms(), notification_ids
        )
        if changed:
            if status.lower() in NOT_DELIVERED:
                self._escalator.kick()
            await self._changes.alarms_changed()
        return changed

    # ------------------------------------------------------------ the console

    async def assign(self, alarm_id: str, hub_id: str, member_id: str, actor: str) -> None:
        """The console sends the alarm (with its accept link) to one member."""
        care = await self._escalator.care_map()
        msgs = await self._dispatch.assign(alarm_id, member_id, care, self._clock.now_ms(), actor)
        await self._escalator.send(msgs)
        await self._changes.alarms_changed(hub_id)

    async def resolve(
        self, alarm_id: str, outcome: str, actor: str, with_it: InTransaction | None = None
    ) -> tuple[AlarmState, bool] | None:
        """The operator resolves the alarm (`DispatchStore.resolve`, `with_it` in its
        transaction): the state it was found in and whether it was resolved; None for no
        such alarm."""
        done = await self._dispatch.resolve(alarm_id, outcome, actor, self._clock.now_ms(), with_it)
        if done is None:
            return None
        hub_id, state, resolved = done
        if resolved:
            await self._changes.alarms_changed(hub_id)
        return state, resolved

    async def triage(
        self, alarm_id: str, hub_id: str, outcome: TriageOutcome, actor: str
    ) -> TriageEffect:
        """The operator's outcome in one step (`DispatchStore.triage`; raises
        `TriageRefused`); closing tells whoever was texted, a ladder started now is taken
        at once."""
        care = await self._escalator.care_map()
        effect, msgs = await self._dispatch.triage(
            alarm_id, outcome, care, self._clock.now_ms(), actor
        )
        await self._escalator.send(msgs)
        if effect.ladder is LadderMove.START_NOW:
            self._escalator.kick()
        await self._changes.alarms_changed(hub_id)
        return effect


def outcome(answer: Answer) -> str:
    """An answer as the log keeps it: done or refused, and the alarm's state (never who)."""
    return ("done" if answer.ok else "refused") + (
        f", {answer.state.value}" if answer.state else ""
    )
