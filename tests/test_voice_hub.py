"""The hub shell's side of voice calls, with a fake voice agent: an uploaded press opens a
call (the self-test's press a test call), the home's devices hear `talking` and then the
alarm's state again, the elder's cancel hangs up, and a hub without a speakerphone reports
it without starting any voice loop."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from carehub.alarm_lifecycle import AlarmState
from carehub.mqtt_contract import AckState
from tests.test_hub_shell import FakeUplink, button, make_hub, wait_until


class FakeVoice:
    def __init__(self) -> None:
        self.started: list[tuple[str, bool]] = []
        self.busy = False
        self.hung_up = 0

    def start_call(self, alarm_id: str, test: bool = False) -> None:
        self.started.append((alarm_id, test))
        self.busy = True

    async def hang_up(self) -> None:
        self.hung_up += 1
        self.busy = False


async def test_an_uploaded_press_opens_a_call_and_the_home_hears_talking(tmp_path: Path) -> None:
    hub, link = make_hub(tmp_path, FakeUplink())
    voice = FakeVoice()
    hub.voice, hub.speakerphone = voice, "ok"
    async with hub.opened():
        await hub.refresh_config()
        await hub.handle_message(*button(hub, "btn-1", 1))
        alarm_id = link.acks[0][1].alarm_id
        assert alarm_id is not None and voice.started == []  # not before the server has it
        outbox = asyncio.ensure_future(hub._drain_outbox())  # noqa: SLF001
        try:
            await wait_until(lambda: bool(voice.started))
        finally:
            outbox.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await outbox
        assert voice.started == [(alarm_id, False)]

        await hub._talking(alarm_id, True)  # noqa: SLF001
        talking = [(d, a.state) for d, a in link.acks[1:]]
        assert ("btn-1", AckState.TALKING) in talking and ("btn-2", AckState.TALKING) in talking
        await hub._talking(alarm_id, False)  # noqa: SLF001
        assert link.acks[-1][1].state is AckState.RECEIVED  # the alarm's state again

        await hub.handle_message(*button(hub, "btn-1", 2, "cancel"))  # the elder hangs up
        assert voice.hung_up == 1
        stored = await hub.store.alarm(alarm_id)
        assert stored is not None and stored.state is AlarmState.CANCELLED
        assert not await hub._alarm_open(alarm_id)  # noqa: SLF001


async def test_the_self_tests_press_opens_a_test_call_and_vitals_open_none(
    tmp_path: Path,
) -> None:
    hub, _ = make_hub(tmp_path, FakeUplink())
    voice = FakeVoice()
    hub.voice, hub.speakerphone = voice, "ok"
    hub._call_for("a-1", {"kind": "button", "severity": "critical", "test": True})  # noqa: SLF001
    hub._call_for("a-2", {"kind": "vitals", "severity": "critical"})  # noqa: SLF001
    hub._call_for("a-3", {"kind": "fall", "severity": "critical"})  # noqa: SLF001
    assert voice.started == [("a-1", True), ("a-3", False)]


def test_no_voice_source_loads_no_voice_and_a_missing_device_reports_it(tmp_path: Path) -> None:
    hub, _ = make_hub(tmp_path, FakeUplink())
    assert hub._voice_loops() == [] and hub.speakerphone is None  # noqa: SLF001
    hub, _ = make_hub(tmp_path, FakeUplink(), voice_source="alsa:carehub-no-such-device")
    assert hub._voice_loops() == [] and hub.speakerphone == "missing"  # noqa: SLF001
