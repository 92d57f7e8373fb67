"""The whole OpenAPI document, fuzzed by schemathesis against the app in-process, on SQLite
and PostgreSQL: no request makes a 5xx, and every answer (status, content type, body) is one
the document promises. Hub routes are called with a real hub's token, admin routes with the
admin token, both from a loaded care directory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from pydantic import ValidationError
from schemathesis import GenerationMode, checks
from schemathesis.python import asgi

from carehub.admin_contract import ADMIN_PREFIX
from carehub.api_contract import ENROLL_PATH, SUMMARIES_PATH, AlarmUpload
from carehub.settings import ServerSettings
from server.app import create_app
from server.main import prepare_database
from server.notifier import ConsoleNotifier
from tests.conftest import DIRECTORY

TOKEN = "hub-token-for-schemathesis-0123456789"
ADMIN = "admin-token-for-schemathesis"
EXAMPLES = 20
"""Per operation and backend: both backends together stay well under a minute."""


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[FastAPI]:
    directory = tmp_path / "directory.toml"
    directory.write_text(DIRECTORY.format(token=TOKEN))
    server_settings = ServerSettings(
        database_url=database_url,  # type: ignore[arg-type]
        admin_token=ADMIN,  # type: ignore[arg-type]
        long_poll_max_s=0.01,  # a long-poll answers at once, whatever `wait_s` was asked
        alarms_first=False,  # a busy machine's loop lag must not turn a check into a 503
    )
    asyncio.run(prepare_database(server_settings, directory))
    yield create_app(server_settings, notifier=ConsoleNotifier())
    asgi.shutdown_lifespans()  # schemathesis started the app's lifespan on its first request


def operations(app: FastAPI) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", app, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    return [result.ok() for result in schema.get_all_operations()]


DAY = date.today().isoformat()
"""A summary's day must be a real date, not in the future (else 422), which its pattern
cannot say: schema-valid summaries are of today."""
PAIRED = ["btn-1", "btn-2", "pend-1", "wear-1"]
"""hub-1's devices in `DIRECTORY`: an alarm or fault for any other device is refused (422),
so schema-valid bodies name one of these (`positive_data_acceptance` then holds)."""


def paired(cases: st.SearchStrategy[schemathesis.Case]) -> st.SearchStrategy[schemathesis.Case]:
    def pair(case: schemathesis.Case, device_id: str) -> schemathesis.Case:
        if isinstance(case.body, dict) and isinstance(case.body.get("device_id"), str):
            if case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE:
                case.body["device_id"] = device_id
        if case.operation.path == SUMMARIES_PATH and isinstance(case.body, dict):
            if case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE:
                case.body["day"] = DAY  # the pattern admits 0000-00-00 and 9999-12-31
        return case

    return (
        st.builds(pair, cases, st.sampled_from(PAIRED)).filter(float_exact).filter(storable_details)
    )


def float_exact(case: schemathesis.Case) -> bool:
    """Positive cases keep integers a float holds exactly: schemathesis computes bounds near
    2**63 (`seq`, `after`) in floats and then calls e.g. 2**63 + 191 schema-valid."""

    def ints(v: object) -> list[int]:
        if isinstance(v, dict):
            return [i for x in v.values() for i in ints(x)]
        if isinstance(v, list):
            return [i for x in v for i in ints(x)]
        return [v] if isinstance(v, int) else []

    if case.meta is not None and case.meta.generation.mode != GenerationMode.POSITIVE:
        return True
    values = ints(case.body) + ints(case.query or {})
    return all(abs(i) <= 2**53 for i in values)


def storable_details(case: schemathesis.Case) -> bool:
    """Positive cases keep `details` the server can store; the schema cannot state all of
    its limits (no NUL, no lone surrogates, depth), so schemathesis would call them valid.
    Refusing them is tested in test_server_hostile.py."""
    if case.meta is not None and case.meta.generation.mode != GenerationMode.POSITIVE:
        return True
    if not isinstance(case.body, dict) or not isinstance(case.body.get("details"), dict):
        return True
    try:
        AlarmUpload.model_validate({**case.body, "device_id": "btn-1"})
    except ValidationError as e:
        return not any(err["loc"][:1] == ("details",) for err in e.errors())
    return True


checks.load_all_checks()
ALL_CHECKS = checks.CHECKS.get_all()


def fuzz(operation: schemathesis.APIOperation, mode: GenerationMode) -> None:
    """Run every check on `EXAMPLES` generated requests to one operation."""
    token = ADMIN if operation.path.startswith(ADMIN_PREFIX) else TOKEN

    @given(case=paired(operation.as_strategy(generation_mode=mode)))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # report the first failure, unshrunk
    )
    def one(case: schemathesis.Case) -> None:
        # a negative case without the header tests the 401; any other gets a real token
        dropped = mode == GenerationMode.NEGATIVE and "Authorization" not in (case.headers or {})
        auth = {} if dropped else {"Authorization": f"Bearer {token}"}
        if case.method == "DELETE" and (case.path_parameters or {}).get("device_id") in PAIRED:
            case.path_parameters = {"device_id": "other-device"}  # keep hub-1's devices paired
        case.call_and_validate(headers=auth, checks=ALL_CHECKS)

    one()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_breaks_the_server_or_the_contract(app: FastAPI, mode: GenerationMode) -> None:
    seen: set[str] = set()
    for operation in operations(app):
        try:
            fuzz(operation, mode)
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE, operation.path
            continue  # nothing to make invalid: no parameters and no body
        seen.add(f"{operation.method.upper()} {operation.path}")
    # every route of both APIs was exercised (negative: all but /healthz, which takes no input)
    assert len(seen) == (27 if mode == GenerationMode.POSITIVE else 26), sorted(seen)


def test_every_error_answer_is_a_documented_problem() -> None:
    """Each route lists its 4xx answers, each with the `Problem` body; admin answers are typed."""
    doc = create_app(ServerSettings()).openapi()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert "422" in codes, (method, path)
            if path not in ("/healthz", ENROLL_PATH):  # the two without a credential
                assert "401" in codes, (method, path)
            for code, answer in op["responses"].items():
                schema = answer.get("content", {}).get("application/json", {}).get("schema")
                if code.startswith("4"):
                    assert schema == {"$ref": "#/components/schemas/Problem"}, (path, code)
                elif code == "200" and path != "/healthz":  # a model, or a list of one
                    assert "$ref" in schema or "$ref" in schema.get("items", {}), (path, schema)
