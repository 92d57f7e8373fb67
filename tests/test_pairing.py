"""Pairing decisions and sealed credentials, without a broker."""

from __future__ import annotations

import base64

import pytest

from carehub.mqtt_contract import PairAnnounce, SealedAccount
from carehub.pairing_seal import SealError, new_private_key, public_b64, seal, unseal
from gateway.pairing import BrokerAccounts, PairedDevice, decide, window_open

KEY_A = public_b64(new_private_key())
KEY_B = public_b64(new_private_key())


def announce(hardware_id: str = "btn-7", kind: str = "button", key: str = KEY_A) -> PairAnnounce:
    return PairAnnounce(v=1, hardware_id=hardware_id, kind=kind, public_key=key)  # type: ignore[arg-type]


def test_the_window_is_open_until_its_end() -> None:
    assert window_open(1000, 999) and not window_open(1000, 1000) and not window_open(None, 0)


def test_decisions() -> None:
    accounts = BrokerAccounts.new()
    seen: dict[str, str] = {}
    a = announce()
    assert decide(a, "btn-7", accounts, seen, True, False).verdict == "ask"
    assert decide(a, "btn-7", accounts, seen, True, True).verdict == "accept"
    assert decide(a, "btn-7", accounts, seen, False, True).verdict == "ignore"
    assert decide(a, "btn-8", accounts, seen, True, True).verdict == "refuse"  # topic ≠ body
    assert decide(announce("bridge"), "bridge", accounts, seen, True, True).verdict == "refuse"
    seen["btn-7"] = KEY_A
    assert decide(a, "btn-7", accounts, seen, True, True).verdict == "ignore"  # a repeat
    twin = decide(announce(key=KEY_B), "btn-7", accounts, seen, True, True)
    assert twin.verdict == "refuse" and "another key" in twin.reason
    paired = accounts.with_device(PairedDevice("btn-9", "button", "btn-9", "$7$x", 0))
    again = decide(announce("btn-9"), "btn-9", paired, {}, True, True)
    assert again.verdict == "accept" and again.reason == "re-pairing"
    other = decide(announce("btn-9", "pendant"), "btn-9", paired, {}, True, True)
    assert other.verdict == "refuse"


def test_accounts_add_replace_remove_and_round_trip() -> None:
    a = BrokerAccounts.new(hub_password="p" * 20)
    one = PairedDevice("b", "button", "b", "$7$1", 1)
    a = a.with_device(PairedDevice("c", "wearable", "c", "$7$c", 1)).with_device(one)
    a = a.with_device(PairedDevice("b", "button", "b", "$7$2", 2))  # re-paired: new password
    assert [(d.device_id, d.password_hash) for d in a.devices] == [("b", "$7$2"), ("c", "$7$c")]
    assert BrokerAccounts.from_json(a.to_json()) == a
    assert [d.device_id for d in a.without_device("b").devices] == ["c"]
    assert {x.username for x in a.accounts()} == {"_hub", "_pair", "b", "c"}


def test_only_the_announcing_key_opens_the_credential() -> None:
    device = new_private_key()
    account = SealedAccount(v=1, username="btn-7", password="x" * 32)
    credential = seal(public_b64(device), "btn-7", "btn-7", account)
    assert unseal(device, credential) == account
    assert account.password not in credential.model_dump_json()
    with pytest.raises(SealError):
        unseal(new_private_key(), credential)
    with pytest.raises(SealError):  # bound to the hardware id
        unseal(device, credential.model_copy(update={"hardware_id": "btn-8"}))
    raw = bytearray(base64.b64decode(credential.sealed))
    raw[0] ^= 1
    with pytest.raises(SealError):
        unseal(device, credential.model_copy(update={"sealed": base64.b64encode(raw).decode()}))


def test_a_low_order_key_is_refused_before_anything_changes() -> None:
    zero = base64.b64encode(bytes(32)).decode()
    with pytest.raises(SealError):
        seal(zero, "btn-7", "btn-7", SealedAccount(v=1, username="btn-7", password="x" * 32))
