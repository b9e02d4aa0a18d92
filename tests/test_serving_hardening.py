"""`cnnapp serve`'s REST hardening: the Host / Origin / Content-Type guard and nosniff (in-process),
the body deadline (ASGI, no socket), the head-size limit and head deadline of the HTTP protocol (a
real uvicorn on a loopback socket, in-process), and a busy port or a bad --host at start (the CLI)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

PREDICT = "/v1/models/tiny_text:predict"
BODY = b'{"instances": ["a good film"]}'


def make_app(model_base, **config):
    from cnnapp.serving import ServerConfig, create_app, discover_models
    return create_app(ServerConfig(models=discover_models(model_base, "tiny_text"), poll_seconds=0, **config))


@pytest.fixture(scope="module")
def serving(model_base):
    return make_app(model_base)


def client_for(serving, host="localhost:8501"):
    from starlette.testclient import TestClient
    return TestClient(serving.app, base_url=f"http://{host}")


# ---------------------------------------------------------------------------- Host (DNS rebinding)

@pytest.mark.parametrize("path", ["/", "/cnnapp/models", "/v1/models", "/v1/models/tiny_text",
                                  "/v1/models/tiny_text/metadata", "/monitoring/prometheus/metrics"])
def test_a_rebinding_host_is_refused_on_every_route(serving, path):
    r = client_for(serving, "evil.example:8501").get(path)
    assert r.status_code == 403 and "evil.example:8501" in r.json()["error"], r.text
    assert "--allowed_hosts" in r.json()["error"]
    r = client_for(serving, "evil.example:8501").post(PREDICT, content=BODY)
    assert r.status_code == 403, r.text
    for host in ("localhost:8501", "127.0.0.1:8501", "[::1]:8501", "LOCALHOST", "localhost."):
        assert client_for(serving, host).get(path).status_code == 200, host


def test_allowed_hosts_follow_the_bound_address(model_base):
    from cnnapp.serving.guard import allowed_hosts_for
    assert allowed_hosts_for("0.0.0.0") == ("*",) and allowed_hosts_for("::") == ("*",)
    assert allowed_hosts_for("0.0.0.0", ["models.example"]) == ("localhost", "127.0.0.1", "::1", "models.example")
    assert allowed_hosts_for("192.168.1.5", [""]) == ("localhost", "127.0.0.1", "::1", "192.168.1.5")
    any_host = make_app(model_base, allowed_hosts=("*",))
    assert client_for(any_host, "models.internal:8501").get("/v1/models/tiny_text").status_code == 200
    named = make_app(model_base, allowed_hosts=allowed_hosts_for("0.0.0.0", ["models.example"]))
    assert client_for(named, "models.example:8501").get("/v1/models/tiny_text").status_code == 200
    assert client_for(named, "10.0.0.7:8501").get("/v1/models/tiny_text").status_code == 403


# ---------------------------------------------------------------------------- Origin and Content-Type

@pytest.mark.parametrize("headers,status", [
    ({}, 200),                                                       # curl, requests, httpx
    ({"content-type": "application/json"}, 200),                     # requests.post(json=...), the page
    ({"content-type": "application/json; charset=utf-8"}, 200),
    ({"content-type": "application/x-www-form-urlencoded"}, 200),    # curl -d, wget, urllib
    ({"content-type": "text/plain;charset=UTF-8"}, 200),             # Node's fetch with a string body
    ({"origin": "http://localhost:8501", "content-type": "application/json"}, 200),   # the served page
    ({"origin": "http://127.0.0.1:3000", "content-type": "application/json"}, 200),   # an allowed host
    ({"origin": "http://evil.example", "content-type": "text/plain"}, 403),           # cross-site form/fetch
    ({"origin": "http://evil.example", "content-type": "application/json"}, 403),
    ({"origin": "null", "content-type": "application/json"}, 403),                    # sandboxed frame, file://
    ({"origin": "http://localhost:8501", "content-type": "text/plain"}, 415),         # a browser's text body
    ({"origin": "http://localhost:8501", "content-type": "multipart/form-data; boundary=x"}, 415),
    ({"origin": "http://localhost:8501", "content-type": "application/x-www-form-urlencoded"}, 415),
    ({"content-type": "application/xml"}, 415),
])
def test_cross_origin_posts_and_non_json_bodies(serving, headers, status):
    r = client_for(serving).post(PREDICT, content=BODY, headers=headers)
    assert r.status_code == status, (headers, r.text)
    if status != 200:
        assert list(r.json()) == ["error"]
        assert ("Origin" if status == 403 else "not JSON") in r.json()["error"]


def test_a_cross_origin_get_is_answered(serving):
    """A browser cannot read a cross-origin GET's answer (no CORS headers) and a GET changes nothing:
    only the Host decides."""
    assert client_for(serving).get("/v1/models/tiny_text", headers={"origin": "http://evil.example"}).status_code == 200


def test_every_answer_says_nosniff(serving):
    c = client_for(serving)
    answers = [c.get("/v1/models/tiny_text"), c.post(PREDICT, content=BODY), c.post(PREDICT, content=b"{"),
               c.get("/v1/models"), c.get("/cnnapp/models"), c.get("/nowhere"), c.get("/v1/foo"),
               c.get("/monitoring/prometheus/metrics"), c.get("/"), client_for(serving, "evil.example").get("/"),
               c.post(PREDICT, content=BODY, headers={"content-type": "text/xml"})]
    assert [r.headers.get("x-content-type-options") for r in answers] == ["nosniff"] * len(answers)
    assert all(r.headers.get_list("x-content-type-options") == ["nosniff"] for r in answers)   # once


# ---------------------------------------------------------------------------- body deadline (ASGI)

def test_a_trickling_body_gets_408_and_the_connection_closed(model_base):
    serving = make_app(model_base, read_timeout_s=0.2)
    sent = []

    async def main():
        never = asyncio.Event()
        chunks = [{"type": "http.request", "body": b'{"instances": ["a', "more_body": True}]

        async def receive():
            if chunks:
                return chunks.pop()
            await never.wait()          # the rest of the body never comes

        async def send(message):
            sent.append(message)
        scope = {"type": "http", "method": "POST", "path": PREDICT, "headers": [(b"host", b"localhost")]}
        await asyncio.wait_for(serving.asgi(scope, receive, send), 30)

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 10
    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    assert b"did not arrive within 0.2 s" in sent[1]["body"]


# ---------------------------------------------------------------------------- the HTTP protocol (socket)

class LoopbackUvicorn:
    """A real uvicorn with cnnapp's protocol on a loopback port, in a thread of this process."""

    def __init__(self, serving):
        import uvicorn
        from cnnapp.serving.server import bind_rest_socket, uvicorn_config
        self.sock = bind_rest_socket("127.0.0.1", 0)
        self.sock.listen()      # connections wait in the backlog until uvicorn accepts: no start-up wait
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn_config(serving, "127.0.0.1", self.port, "warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return s

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def read_all(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


@pytest.fixture(scope="module")
def loopback(model_base):
    server = LoopbackUvicorn(make_app(model_base, read_timeout_s=0.3, max_header_bytes=4096))
    yield server
    server.stop()


def test_protocol_answers_normal_requests_on_keep_alive(loopback):
    with loopback.connect() as s:
        for _ in range(2):
            s.sendall(b"GET /v1/models/tiny_text HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = s.recv(65536)
            assert head.startswith(b"HTTP/1.1 200") and b"AVAILABLE" in head, head


def test_protocol_refuses_an_oversized_head_with_431(loopback):
    with loopback.connect() as s:
        s.sendall(b"GET /v1/models/tiny_text HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 5000)
        answer = read_all(s)       # the server closes: recv returns b""
    assert answer.startswith(b"HTTP/1.1 431") and b"exceeds 4096 bytes" in answer, answer[:300]
    with loopback.connect() as s:  # the same size in one packet with the head's end
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 5000 + b"\r\n\r\n")
        assert read_all(s).startswith(b"HTTP/1.1 431")


@pytest.mark.parametrize("first_bytes", [b"", b"GET /v1/models/tiny_text HTTP/1.1\r\nHost: 127.0"])
def test_protocol_closes_a_head_that_never_completes(loopback, first_bytes):
    """Slowloris: a connection that sends nothing, or a head it never finishes, is answered 408
    and closed after read_timeout_s (0.3 s here), not held for ever."""
    started = time.monotonic()
    with loopback.connect() as s:
        s.sendall(first_bytes)
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.3 s" in answer, answer
    assert time.monotonic() - started < 5


def test_protocol_bounds_the_rest_of_a_body_it_answered_early(loopback):
    """413 at once from Content-Length; the rest of the body never comes: closed after
    read_timeout_s, while a body that does end keeps the connection for the next request."""
    started = time.monotonic()
    with loopback.connect() as s:
        s.sendall(b"POST /v1/models/tiny_text:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999999999\r\n"
                  b"\r\n{")
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 413") and time.monotonic() - started < 5, answer[:200]
    with loopback.connect() as s:    # a body sent with a GET, never read by the app, then a request
        s.sendall(b"GET /v1/models/tiny_text HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"
                  b"GET /v1/models/tiny_text HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert read_all(s).count(b"HTTP/1.1 200") == 2


# ---------------------------------------------------------------------------- start-up errors (CLI)

def test_busy_rest_port_and_bad_host_are_one_line_at_once(tmp_path):
    """A busy --rest_api_port used to hang 40 s (models loading), then print an 84-line traceback;
    --host 999.1.1.1 blamed --port. Now: one line naming the option, before anything loads."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for args, option in ([["--rest_api_port", port, "--port", 0], "--rest_api_port"],
                             [["--host", "999.1.1.1"], "--host"]):
            started = time.monotonic()
            r = subprocess.run([sys.executable, "-m", "cnnapp", "serve", "--model_base_path", tmp_path, *map(str, args)],
                               capture_output=True, text=True, timeout=60)
            seconds = time.monotonic() - started
            output = (r.stdout + r.stderr).strip()
            assert r.returncode == 1 and len(output.splitlines()) == 1, output
            assert output.startswith(f"Error: {option}:") and "Traceback" not in output, output
            assert seconds < 5, f"{seconds:.1f} s: {output}"
            assert f"Received: {option} {args[1]}" in output, output
