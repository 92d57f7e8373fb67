"""Whatever a detector puts in an alarm's evidence, the hub can still upload the alarm: the
server's `Details` bounds refuse what databases cannot store, `storable_details` makes any
value acceptable instead of letting a ValidationError cost an alarm."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from carehub.alarm_lifecycle import AlarmKind
from carehub.api_contract import MAX_DETAILS_DEPTH, AlarmUpload, storable_details

leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20)
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=30,
)


def upload(details: object) -> AlarmUpload:
    return AlarmUpload(
        alarm_id="a1",
        device_id="pend-1",
        kind=AlarmKind.FALL,
        raised_at_ms=1,
        details=storable_details({"evidence": details}),
    )


@settings(max_examples=300, deadline=None)
@given(values)
def test_any_evidence_becomes_uploadable(details: object) -> None:
    upload(details)


def test_what_is_kept_and_what_becomes_null() -> None:
    deep: object = 1
    for _ in range(MAX_DETAILS_DEPTH + 3):
        deep = [deep]
    cleaned = upload(
        {"peak": math.inf, "score": math.nan, "n": 2**70, "who": "a\x00b\ud800c", "deep": deep}
    ).details["evidence"]
    assert cleaned["peak"] is None and cleaned["score"] is None and cleaned["n"] is None
    assert cleaned["who"] == "abc"
    assert upload({"ok": [1, 2.5, "x", None, True]}).details["evidence"] == {
        "ok": [1, 2.5, "x", None, True]
    }


def test_a_window_the_contract_refuses_is_dropped_not_the_alarm() -> None:
    bad = {"hz": 1e-300, "t0_ms": 1, "acc": [[0.0, 0.0, 1.0]]}
    good = {"hz": 50.0, "t0_ms": 1, "acc": [[0.0, 0.0, 1.0]]}
    for window, kept in ((bad, None), (good, good), ([1, 2], None)):
        details = storable_details({"peak_g": 3.1, "window": window})
        uploaded = AlarmUpload(
            alarm_id="a1", device_id="pend-1", kind=AlarmKind.FALL, raised_at_ms=1, details=details
        )
        assert uploaded.details == {"peak_g": 3.1, "window": kept}
