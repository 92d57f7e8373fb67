"""The pure rule of a responder's answer (`server.dispatch.answers.judge`) and the one
order the wing tells its watchers in (`ChangeSignal.alarms_changed`)."""

from __future__ import annotations

import pytest

from carehub.alarm_lifecycle import FINAL_STATES, AlarmState
from server.change_signal import ALARMS_KEY, HEALTH_KEY, ChangeSignal, hub_key
from server.dispatch.answers import DONE, WRITES, Answer, AnswerKey, judge

OPEN = AlarmState.DISPATCHED


@pytest.mark.parametrize(
    ("action", "accepted_by", "arrived", "key"),
    [
        ("accept", None, False, AnswerKey.ACCEPTED),
        ("accept", "li", False, AnswerKey.ALREADY_YOURS),
        ("accept", "wang", False, AnswerKey.TAKEN_BY_OTHER),
        ("decline", None, False, AnswerKey.DECLINED),
        ("decline", "wang", False, AnswerKey.DECLINED),
        ("decline", "li", False, AnswerKey.CANNOT_DECLINE),
        ("arrived", None, False, AnswerKey.NOT_YOURS),
        ("arrived", "wang", False, AnswerKey.NOT_YOURS),
        ("arrived", "li", False, AnswerKey.ARRIVED),
        ("arrived", "li", True, AnswerKey.ARRIVAL_KNOWN),
    ],
)
def test_an_answer_on_an_open_alarm(
    action: str, accepted_by: str | None, arrived: bool, key: AnswerKey
) -> None:
    assert judge(action, OPEN, accepted_by, "li", arrived) is key


@pytest.mark.parametrize("state", sorted(FINAL_STATES, key=lambda s: s.value))
@pytest.mark.parametrize("action", ["accept", "decline", "arrived", "other"])
def test_every_answer_on_a_closed_alarm_finds_it_over(state: AlarmState, action: str) -> None:
    assert judge(action, state, "li", "li", False) is AnswerKey.ALREADY_OVER


def test_an_unknown_action_on_an_open_alarm_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        judge("maybe", OPEN, None, "li", False)


def test_only_the_three_changes_write_and_every_write_is_done() -> None:
    assert WRITES == {AnswerKey.ACCEPTED, AnswerKey.DECLINED, AnswerKey.ARRIVED}
    assert WRITES <= DONE
    assert not Answer(AnswerKey.TAKEN_BY_OTHER, OPEN).ok
    assert Answer(AnswerKey.ARRIVAL_KNOWN, OPEN).ok


async def test_watchers_hear_each_hub_once_then_the_consoles_then_health() -> None:
    changes = ChangeSignal()
    heard: list[str] = []

    class Relay:
        async def publish(self, key: str) -> None:
            heard.append(key)

    changes.relay = Relay()
    await changes.alarms_changed("hub-2", "hub-1", "hub-2", health=True)
    assert heard == [hub_key("hub-2"), hub_key("hub-1"), ALARMS_KEY, HEALTH_KEY]
    heard.clear()
    await changes.alarms_changed()
    assert heard == [ALARMS_KEY]
