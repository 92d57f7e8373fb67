"""The escalation worker: takes due steps, sends their messages, records the outcomes.

Woken at once when an alarm arrives or an answer comes in (`kick`), and by a short sweep
(the next due time, at most `sweep_s` away), so a step is taken within about a second of
its due time in any server process. Decisions are `server.escalation`; SQL is
`server.dispatch.store`; this loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from carehub.clock import Clock
from server.accept_link import link_token
from server.care_map import CareMap
from server.change_signal import ChangeSignal
from server.dispatch.queue import Message
from server.dispatch.store import DispatchStore
from server.notifier import Notifier, NotifierError, redact_phones
from server.send_policy import MAX_PER_WINDOW, WINDOW_MS, Outgoing, Sent, Waiting, plan_texts
from server.sms_text import LINK

log = logging.getLogger(__name__)

STOP_GRACE_S = 12.0
"""How long a stopping server waits for its sends in flight: past the provider's 10 s
timeout, so a send that is answered at all gets recorded."""
OPTED_OUT = "the number opted out (STOP); it is sent nothing until START"
MAX_SENDS_IN_FLIGHT = 16
"""Batches being sent behind the pass at once; more wait (their SMS requests are bounded
by `concurrent_sms` anyway)."""


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
        care_ttl_s: float = 1.0,
        max_per_number: int = MAX_PER_WINDOW,
        on_care_map: Callable[[], None] | None = None,
    ) -> None:
        self._on_care_map = on_care_map
        self._max_per_number = max_per_number
        self._dispatch = dispatch
        self._notifier = notifier
        self._clock = clock
        self._changes = changes
        self._base = public_base_url.rstrip("/")
        self._sweep_s = sweep_s
        self._wake = asyncio.Event()
        self._sending = asyncio.Semaphore(concurrent_sms)
        self._care: CareMap | None = None
        self._care_version: int | None = None
        self._care_at = float("-inf")
        self._care_ttl_s = care_ttl_s
        self._care_refresh: asyncio.Task[None] | None = None
        self._swept_at = float("-inf")
        self._next_due_ms: int | None = None
        """The earliest due time of any ladder, as the last pass read it after its steps."""
        self._planning = asyncio.Lock()
        self._flying: list[Sent] = []
        """Texts planned and being sent, not yet recorded: history for the next plan."""
        self._sends: dict[asyncio.Task[None], frozenset[str]] = {}
        """The send tasks in flight, each with the ids of the messages it carries."""

    def kick(self) -> None:
        """Something is due now (a new alarm, an answer, a failed delivery)."""
        self._wake.set()

    async def care_map(self) -> CareMap:
        """The directory as of about `care_ttl_s` ago. Only the first call waits for the
        database; after that the map is served while its version is checked in the
        background (one small read), and rebuilt there only when the directory changed:
        a rebuild reads every team and member, which for a city stalls the process."""
        if self._care is None:
            await self._refresh_care()
        elif self._clock.monotonic() - self._care_at > self._care_ttl_s and (
            self._care_refresh is None or self._care_refresh.done()
        ):
            self._care_refresh = asyncio.create_task(self._refresh_care())
        assert self._care is not None
        return self._care

    async def _refresh_care(self) -> None:
        at = self._clock.monotonic()
        try:
            fresh = await self._dispatch.care_map_if_changed(self._care_version)
        except Exception:
            if self._care is None:
                raise
            log.exception("reading the directory failed; the previous one is kept")
            return
        if fresh is not None:
            self._care_version, self._care = fresh
            if self._on_care_map is not None:
                self._on_care_map()
        self._care_at = at

    async def run(self) -> None:
        try:
            while True:
                kicked = self._wake.is_set()
                self._wake.clear()
                try:
                    await self.take_due(kicked=kicked)
                except Exception:
                    log.exception("escalation pass failed; retrying")
                wait = self._sweep_s
                due = self._next_due_ms  # as the pass last read it
                if due is not None:
                    wait = min(wait, max(0.0, (due - self._clock.now_ms()) / 1000))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            if self._care_refresh is not None:
                self._care_refresh.cancel()

    async def close(self, grace_s: float = STOP_GRACE_S) -> None:
        """After `run` is cancelled: let the sends in flight finish and be recorded, for at
        most `grace_s`, then cancel the rest. A send cut off unrecorded is sent again by
        another process when its lease runs out (a duplicate SMS), so a planned restart
        waits for them."""
        sends = list(self._sends)
        if not sends:
            return
        _, pending = await asyncio.wait(sends, timeout=grace_s)
        for task in pending:  # claimed under a lease: sent again after it runs out
            task.cancel()
        if pending:
            log.warning(
                "stopped with %d send batch(es) unrecorded; resent after the lease", len(pending)
            )
            await asyncio.gather(*pending, return_exceptions=True)

    async def pass_once(self) -> int:
        """One whole pass (a sweep included), its sends waited for (`run` does not wait for
        them). Returns the number of messages sent."""
        sent = await self.take_due(sweep=True)
        await self.drain()
        return sent

    async def drain(self) -> None:
        """Wait for the sends in flight."""
        while self._sends:
            await asyncio.wait(set(self._sends))

    async def take_due(self, sweep: bool = False, kicked: bool = False) -> int:
        """Take due steps and start sending their messages, without waiting for the sends;
        on a sweep (at most every `sweep_s`) also what else is due (retries, expired leases,
        alarms without a ladder). Returns the number of messages started.

        A new alarm's ladder is stored with the alarm, due now (`server.store.new_ladder`),
        and its first step is taken and claimed in one transaction (`advance_due`): the SMS
        goes out after the alarm's own commit and one more. The sends run behind the pass,
        so an alarm arriving meanwhile is taken at once instead of waiting for the previous
        alarm's SMS to be sent and recorded (that wait was most of `bench e2e`'s p99).

        A pass `kicked` (an alarm arrived, an answer came) is the step's one transaction,
        which also reads the next due time; a pass on the timer reads that time first, so
        with nothing due it takes no write lock. Retries and leases wait for the sweep
        (within `sweep_s`, as before: they were never what woke the loop)."""
        care = await self.care_map()
        sweep = sweep or self._clock.monotonic() - self._swept_at >= self._sweep_s
        if sweep:
            self._swept_at = self._clock.monotonic()
            await self._dispatch.start_ladders(self._clock.now_ms())
        sent = 0
        due_now = kicked
        while True:
            now = self._clock.now_ms()
            if not due_now:
                self._next_due_ms = await self._dispatch.next_due_ms()
                if self._next_due_ms is None or self._next_due_ms > now:
                    break
            advanced = await self._dispatch.advance_due(now, care)
            await self._send_behind(advanced.messages)
            sent += len(advanced.messages)
            self._next_due_ms = advanced.next_due_ms
            due_now = advanced.full or (
                advanced.next_due_ms is not None and advanced.next_due_ms <= self._clock.now_ms()
            )
            if not due_now:
                break
        while sweep:
            # a message of ours whose lease ran out while still being sent is not sent twice
            claimed = await self._dispatch.claim_unsent(self._clock.now_ms())
            flying = frozenset().union(*self._sends.values())
            unsent = [m for m in claimed if m.id not in flying]
            await self._send_behind(unsent)
            sent += len(unsent)
            if not unsent:
                break
        return sent

    async def _send_behind(self, msgs: Sequence[Message]) -> None:
        """Start sending `msgs` without waiting for them (at most `MAX_SENDS_IN_FLIGHT`
        batches at once: beyond that, wait for one to finish)."""
        if not msgs:
            return
        while len(self._sends) >= MAX_SENDS_IN_FLIGHT:
            await asyncio.wait(set(self._sends), return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(self._send_logged(msgs), name="escalator-send")
        self._sends[task] = frozenset(m.id for m in msgs)
        task.add_done_callback(lambda done: self._sends.pop(done, None))

    async def _send_logged(self, msgs: Sequence[Message]) -> None:
        try:
            await self.send(msgs)
        except Exception:
            # claimed under a lease: a later pass sends what was not recorded
            log.exception("sending %d message(s) failed; retried after their lease", len(msgs))

    async def send(self, msgs: Sequence[Message]) -> None:
        """Send concurrently (bounded), then record every outcome in one commit.

        Per number, `server.send_policy` decides: under its limit each text goes alone,
        beyond it the rest are merged into one message, and a number over its limit gets
        at most one merged message every 10 s (the rest wait, queued)."""
        if not msgs:
            return
        numbers = {m.to_phone for m in msgs}
        async with self._planning:  # one plan at a time, each seeing the others in flight
            now = self._clock.now_ms()
            rendered = {m.id: self._render(m) for m in msgs}
            history, opted_out = await self._dispatch.send_context(numbers, now - WINDOW_MS)
            history += [s for s in self._flying if s.number in numbers]
            waiting = [Waiting(m.id, m.to_phone, rendered[m.id]) for m in msgs]
            plan = plan_texts(waiting, history, now, self._max_per_number)
            flying = [Sent(o.number, o.body, now) for o in plan.send]
            self._flying += flying
        try:
            by_id = {m.id: m for m in msgs}
            held = [m for m in msgs if m.to_phone in plan.held_until_ms]
            for number, until in plan.held_until_ms.items():
                await self._dispatch.hold([m.id for m in held if m.to_phone == number], until)
            sent = await asyncio.gather(
                *(self._send_one(o, o.number in opted_out) for o in plan.send)
            )
            results = [
                (by_id[key], ref, error)
                for outgoing, (ref, error) in zip(plan.send, sent, strict=True)
                for key in outgoing.keys
            ]
            changed = await self._dispatch.record_results(results, self._clock.now_ms())
        finally:
            for s in flying:  # recorded (or lost with an error): the next plan reads them
                self._flying.remove(s)
        # the health board lists failed SMS
        await self._changes.alarms_changed(*changed, health=any(e for _, _, e in results))

    def _render(self, msg: Message) -> str:
        return msg.body.replace(LINK, self.link_url(msg)) if LINK in msg.body else msg.body

    async def _send_one(self, out: Outgoing, opted_out: bool) -> tuple[str | None, str]:
        """Send one text; a number that replied STOP is undeliverable (the provider would
        refuse it too), so the step moves on without it."""
        async with self._sending:
            try:
                if opted_out:
                    raise NotifierError(OPTED_OUT)
                ref = await self._notifier.send_sms(out.number, out.body, out.keys)
            except NotifierError as e:
                log.warning("SMS for %s failed: %s", ", ".join(out.keys), redact_phones(str(e)))
                return None, str(e)
        log.info("SMS %s sent for notification %s", ref, ", ".join(out.keys))
        return ref, ""

    def link_url(self, msg: Message) -> str:
        return f"{self._base}/r/{msg.alarm_ref}/{link_token(self._dispatch.link_secret, msg.id)}"
