"""Issue 22: the load-balancer configs in docs/examples/ (nginx.conf, haproxy.cfg) say what
the server needs: each hub kept on one process by the header it signs every request with,
timeouts above the long-poll's hold and below the server's keep-alive, the console's event
streams unbuffered. Read with a small parser here; checked by `nginx -t` / `haproxy -c` too
where those are installed (nothing is installed for it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from carehub.api_contract import HEALTH_PATH
from carehub.settings import ServerSettings
from server.console.routes import KEEPALIVE_S
from server.console.routes import router as console_router

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
NGINX = EXAMPLES / "nginx.conf"
HAPROXY = EXAMPLES / "haproxy.cfg"
DEFAULTS = ServerSettings.model_fields
LONG_POLL_S = DEFAULTS["long_poll_max_s"].default
KEEP_ALIVE_S = DEFAULTS["http_keep_alive_s"].default
MAX_BODY = DEFAULTS["http_max_body_bytes"].default


@dataclass
class Block:
    """An nginx block: its directives (name, args) in order and its sub-blocks."""

    args: list[str] = field(default_factory=list)
    directives: list[tuple[str, list[str]]] = field(default_factory=list)
    blocks: list[tuple[str, Block]] = field(default_factory=list)

    def get(self, name: str) -> list[str]:
        (args,) = [a for n, a in self.directives if n == name]
        return args

    def block(self, name: str, *args: str) -> Block:
        (found,) = [b for n, b in self.blocks if n == name and b.args[: len(args)] == list(args)]
        return found


def parse_nginx(text: str) -> Block:
    """nginx's grammar, enough for a config without quotes-in-quotes or includes."""
    tokens = re.findall(r'"[^"]*"|[{};]|[^\s{};"]+', re.sub(r"#[^\n]*", "", text))
    root = Block()
    stack: list[Block] = [root]
    words: list[str] = []
    for tok in tokens:
        if tok == ";":
            stack[-1].directives.append((words[0], words[1:]))
            words = []
        elif tok == "{":
            block = Block(words[1:])
            stack[-1].blocks.append((words[0], block))
            stack.append(block)
            words = []
        elif tok == "}":
            assert not words, words
            stack.pop()
        else:
            words.append(tok.strip('"') if tok.startswith('"') else tok)
    assert len(stack) == 1 and not words, "unbalanced braces or a missing ';'"
    return root


def seconds(value: str) -> float:
    """nginx / HAProxy times: 60s, 4s, 1h, 500ms."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", value)
    assert m, value
    return float(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m[2]]


def event_stream_paths() -> list[str]:
    """The console's Server-Sent Events routes (what `live.js` opens with EventSource)."""
    paths = [str(getattr(r, "path", "")) for r in console_router.routes]
    paths = [p for p in paths if p.endswith("/events")]
    assert paths
    return paths


def test_nginx_keeps_each_hub_on_one_process_and_spreads_the_rest() -> None:
    http = parse_nginx(NGINX.read_text()).block("http")
    mapping = http.block("map", "$http_authorization", "$carehub_affinity")
    assert ("default", ["$http_authorization"]) in mapping.directives
    assert ("", ["$request_id"]) in mapping.directives  # no token: no one process for all
    upstream = http.block("upstream", "carehub")
    assert upstream.get("hash") == ["$carehub_affinity", "consistent"]
    assert len([a for n, a in upstream.directives if n == "server"]) == 3
    assert seconds(upstream.get("keepalive_timeout")[0]) < KEEP_ALIVE_S


def test_nginx_timeouts_body_size_and_event_streams_fit_the_server() -> None:
    http = parse_nginx(NGINX.read_text()).block("http")
    (tls,) = [
        b for n, b in http.blocks if n == "server" and ("listen", ["443", "ssl"]) in b.directives
    ]
    assert seconds(tls.get("proxy_read_timeout")[0]) > LONG_POLL_S
    assert tls.get("client_max_body_size") == ["1m"] and MAX_BODY == 1024 * 1024
    # kept-alive upstream connections need HTTP/1.1 without "Connection: close"
    assert tls.get("proxy_http_version") == ["1.1"]
    headers = {a[0]: a[1:] for n, a in tls.directives if n == "proxy_set_header"}
    assert headers["Connection"] == [""] and "X-Forwarded-For" in headers
    streams = [b for n, b in tls.blocks if n == "location" and b.args[0] == "~"]
    (stream,) = streams
    for path in event_stream_paths():
        assert re.search(stream.args[1], path), path
    assert re.search(stream.args[1], "/console/alarms") is None
    assert stream.get("proxy_buffering") == ["off"]
    assert seconds(stream.get("proxy_read_timeout")[0]) > KEEPALIVE_S


def haproxy_sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if not line[0].isspace():
            current = sections.setdefault(line.strip(), [])
        else:
            current.append(" ".join(line.split()))
    return sections


def test_haproxy_keeps_each_hub_on_one_process_with_the_same_timeouts() -> None:
    s = haproxy_sections(HAPROXY.read_text())
    backend, defaults = s["backend carehub"], s["defaults"]
    assert "balance hdr(Authorization)" in backend and "hash-type consistent" in backend
    assert f"option httpchk GET {HEALTH_PATH}" in backend
    assert len([x for x in backend if x.startswith("server ")]) == 3

    def timeout(name: str) -> float:
        (value,) = [x.split()[-1] for x in defaults if x.startswith(f"timeout {name} ")]
        return seconds(value)

    assert timeout("server") > LONG_POLL_S and timeout("server") > KEEPALIVE_S
    assert timeout("client") > LONG_POLL_S
    assert timeout("http-keep-alive") < KEEP_ALIVE_S
    assert "option forwardfor" in defaults


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=carehub.example.org", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return key, cert


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_itself_accepts_the_example(tmp_path: Path) -> None:
    key, cert = _self_signed(tmp_path)
    text = (
        NGINX.read_text()
        .replace("/etc/ssl/carehub/fullchain.pem", str(cert))
        .replace("/etc/ssl/carehub/privkey.pem", str(key))
        .replace("pid /run/nginx.pid;", f"pid {tmp_path / 'nginx.pid'};")
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    r = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_itself_accepts_the_example(tmp_path: Path) -> None:
    key, cert = _self_signed(tmp_path)
    pem = tmp_path / "carehub.pem"
    pem.write_text(cert.read_text() + key.read_text())
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(HAPROXY.read_text().replace("/etc/ssl/carehub/carehub.pem", str(pem)))
    r = subprocess.run(["haproxy", "-c", "-f", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
