"""Extras per role: a hub on a Raspberry Pi installs `carehub[hub]` and gets no server or
evaluation libraries, and the hub's code paths never import them."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib.metadata import requires

SERVER_OR_EVAL_ONLY = {"scipy", "twilio", "asyncpg", "fastapi", "uvicorn", "sqlalchemy", "alembic"}


def _requirements(extra: str | None, seen: frozenset[str] = frozenset()) -> set[str]:
    """Distribution names `carehub[extra]` installs, following self-references like
    `carehub[hub,server]`."""
    names: set[str] = set()
    for line in requires("carehub") or []:
        spec, _, marker = line.partition(";")
        wanted = re.search(r'extra\s*==\s*"([^"]+)"', marker)
        if (wanted.group(1) if wanted else None) != extra:
            continue
        name = re.split(r"[\s\[<>=!~;]", spec.strip(), maxsplit=1)[0].lower()
        if name == "carehub":
            for inner in re.findall(r"\[([^\]]+)\]", spec)[0].split(","):
                if inner not in seen:
                    names |= _requirements(inner.strip(), seen | {extra or ""})
        else:
            names.add(name)
    return names


def test_the_hub_extra_installs_no_server_or_evaluation_library() -> None:
    hub = _requirements(None) | _requirements("hub")
    assert {"aiomqtt", "aiosqlite", "httpx", "numpy"} <= hub
    assert not hub & SERVER_OR_EVAL_ONLY, hub & SERVER_OR_EVAL_ONLY


def test_the_test_extra_covers_every_role() -> None:
    everything = _requirements("test")
    assert {"scipy", "twilio", "asyncpg", "fastapi", "aiomqtt", "amqtt", "pytest"} <= everything


def test_the_hub_command_path_imports_no_server_or_evaluation_library() -> None:
    """What `carehub hub` loads: the CLI and the hub runtime."""
    probe = (
        "import sys, cli.main, gateway.main, gateway.hub; "
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(ast.literal_eval(out))
    assert not loaded & SERVER_OR_EVAL_ONLY, loaded & SERVER_OR_EVAL_ONLY


def test_the_cli_starts_without_any_roles_library() -> None:
    """`carehub` itself (the kernel's pydantic and typer only) loads no role's libraries:
    each command imports its own, so every role's extra runs its commands (the slow proof,
    a fresh venv per role, is `tests/test_role_installs.py`)."""
    probe = "import sys, cli.main; print(sorted({m.split('.')[0] for m in sys.modules}))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(ast.literal_eval(out))
    roles = {"numpy", "paho", "aiomqtt", "httpx", "cryptography", "bench", "evaluation"}
    assert not loaded & (roles | SERVER_OR_EVAL_ONLY), loaded & (roles | SERVER_OR_EVAL_ONLY)
