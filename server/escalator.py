"""The escalation worker: takes due steps, sends their messages, records the outcomes.

Woken at once when an alarm arrives or an answer comes in (`kick`), and by a short sweep
(the next due time, at most `sweep_s` away), so a step is taken within about a second of
its due time in any server process. Decisions are `server.escalation`; SQL is
`server.dispatch_store`; this loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from carehub.clock import Clock
from server.accept_link import link_token
from server.care_map import CareMap
from server.change_signal import ChangeSignal
from server.dispatch_store import DispatchStore, Message
from server.notifier import Notifier, NotifierError
from server.sms_text import LINK

log = logging.getLogger(__name__)


class Escalator:
    def __init__(
        self,
        dispatch: DispatchStore,
        notifier: Notifier,
        clock: Clock,
        changes: ChangeSignal,
        public_base_url: str,
        sweep_s: float = 1.0,
        concurrent_sms: int = 8,
        care_ttl_s: float = 5.0,
    ) -> None:
        self._dispatch = dispatch
        self._notifier = notifier
        self._clock = clock
        self._changes = changes
        self._base = public_base_url.rstrip("/")
        self._sweep_s = sweep_s
        self._wake = asyncio.Event()
        self._sending = asyncio.Semaphore(concurrent_sms)
        self._care: CareMap | None = None
        self._care_at = float("-inf")
        self._care_ttl_s = care_ttl_s

    def kick(self) -> None:
        """Something is due now (a new alarm, an answer, a failed delivery)."""
        self._wake.set()

    async def care_map(self) -> CareMap:
        """The directory as of at most `care_ttl_s` ago (it changes rarely)."""
        now = self._clock.monotonic()
        if self._care is None or now - self._care_at > self._care_ttl_s:
            self._care, self._care_at = await self._dispatch.care_map(), now
        return self._care

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.pass_once()
            except Exception:
                log.exception("escalation pass failed; retrying")
            wait = self._sweep_s
            with contextlib.suppress(Exception):
                due = await self._dispatch.next_due_ms()
                if due is not None:
                    wait = min(wait, max(0.0, (due - self._clock.now_ms()) / 1000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def pass_once(self) -> int:
        """Start ladders for new alarms, take due steps, send what is unsent. Returns the
        number of messages sent."""
        care = await self.care_map()
        now = self._clock.now_ms()
        await self._dispatch.start_ladders(now, care)
        sent = 0
        while True:
            msgs = await self._dispatch.advance_due(self._clock.now_ms(), care)
            msgs += await self._dispatch.claim_unsent(self._clock.now_ms())
            if not msgs:
                return sent
            await self.send(msgs)
            sent += len(msgs)

    async def send(self, msgs: Sequence[Message]) -> None:
        """Send concurrently (bounded), then record every outcome in one commit."""
        results = await asyncio.gather(*(self._send_one(m) for m in msgs))
        for hub_id in set(await self._dispatch.record_results(results, self._clock.now_ms())):
            await self._changes.notify(f"hub:{hub_id}")
        await self._changes.notify("alarms")

    async def _send_one(self, msg: Message) -> tuple[Message, str | None, str]:
        body = msg.body
        if LINK in body:
            body = body.replace(LINK, self.link_url(msg))
        async with self._sending:
            try:
                ref = await self._notifier.send_sms(msg.to_phone, body)
            except NotifierError as e:
                log.warning(
                    "alarm %s: SMS (%s) to %s failed: %s",
                    msg.alarm_ref,
                    msg.purpose,
                    msg.member_id or "contact",
                    e,
                )
                return msg, None, str(e)
        log.info(
            "alarm %s: SMS (%s) to %s sent (%s)",
            msg.alarm_ref,
            msg.purpose,
            msg.member_id or "contact",
            ref,
        )
        return msg, ref, ""

    def link_url(self, msg: Message) -> str:
        return f"{self._base}/r/{msg.alarm_ref}/{link_token(self._dispatch.link_secret, msg.id)}"
