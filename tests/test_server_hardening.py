"""The server's edges under hostile or sloppy clients: hang-ups, bad values, Host names, API keys.

A real uvicorn on a loopback port with tiny models. Hang-up tests hold the decoder at a gate, so what
they check (a job is cancelled, a decode stops early) never depends on timing.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from moddecode import MOD, Policy  # noqa: E402
from moddecode.cli import app as cli_app  # noqa: E402
from moddecode.errors import ConfigError  # noqa: E402
from moddecode.policy import ModelCache  # noqa: E402
from moddecode.server import BackgroundServer, ServerSettings, create_app  # noqa: E402
from gated import GatedMOD  # noqa: E402

pytestmark = pytest.mark.timeout(120)
USER = [{"role": "user", "content": "tell me about the sky"}]


@pytest.fixture(scope="module")
def policies(base_a, adapters):
    cache = ModelCache()
    return [Policy.load(str(base_a), adapter=adapters[0], name="lora0", cache=cache),
            Policy.load(str(base_a), adapter=adapters[1], name="lora1", cache=cache),
            Policy.load(str(base_a), system_prompt="please be funny", name="funny", cache=cache)]


@pytest.fixture(scope="module")
def server(policies):
    with BackgroundServer(create_app(MOD(policies), max_tokens_limit=16, max_queue=4)) as running:
        yield running


def post(server, body, path="/v1/chat/completions", **kwargs):
    """POST a JSON body (ASCII-escaped, so lone surrogates travel as the \\ud800 escapes JSON allows)."""
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return httpx.post(server.url + path, content=json.dumps(body), headers=headers, timeout=60, **kwargs)


def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the server never reached the expected state"
        time.sleep(0.01)


# ----- a client that hangs up has its rows dropped -----

def open_request(server, body: dict) -> socket.socket:
    """Send a chat request on a raw socket and leave it open (closing it is the hang-up)."""
    data = json.dumps(body).encode()
    sock = socket.create_connection((server.host, server.port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


LONG = {"model": "mod", "messages": USER, "max_tokens": 60, "ignore_eos": True}


@pytest.mark.parametrize("stream", [False, True])
def test_hanging_up_while_decoding_cancels_the_rows(policies, stream):
    gated = GatedMOD(policies)
    with BackgroundServer(create_app(gated, batch_window_ms=0, max_tokens_limit=64)) as srv:
        scheduler = srv.app.state.scheduler
        try:
            sock = open_request(srv, {**LONG, "stream": stream})
            wait_until(lambda: len(scheduler.running) == 1)  # taken by the decoder, held at the gate
            job = scheduler.running[0]
            sock.close()
            wait_until(lambda: job.cancelled)
        finally:
            gated.gate.set()
        wait_until(lambda: not scheduler.running)
        assert gated.yielded == 1, "decoding went on for a client that had left"
        assert post(srv, {"messages": USER, "max_tokens": 3}).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_hanging_up_while_queued_means_never_decoded(policies, stream):
    gated = GatedMOD(policies)
    with BackgroundServer(create_app(gated, batch_window_ms=0, max_tokens_limit=64)) as srv, \
            ThreadPoolExecutor(1) as pool:
        scheduler = srv.app.state.scheduler
        try:
            first = pool.submit(post, srv, {"messages": USER, "max_tokens": 3})
            wait_until(lambda: len(scheduler.running) == 1)
            sock = open_request(srv, {**LONG, "stream": stream})
            wait_until(lambda: len(scheduler.queued) == 1)
            job = scheduler.queued[0]
            sock.close()
            wait_until(lambda: job.cancelled)
        finally:
            gated.gate.set()
        assert first.result().status_code == 200
        wait_until(lambda: not scheduler.running and not scheduler.queued)
        assert scheduler.rows_started == 1, "the queued request of a client that had left was decoded"


# ----- values: strict types, valid Unicode, bounded seeds, some text -----

def content(text):
    return {"messages": [{"role": "user", "content": text}]}


@pytest.mark.parametrize("body,param", [
    ({"seed": 2**64}, "seed"),
    ({"seed": 2**63}, "seed"),
    ({"seed": -(2**63) - 1}, "seed"),
    (content("\ud800x"), "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi \udc00"}]}]},
     "messages[0].content[0].text"),
    ({"stop": ["ok", "\ud800"]}, "stop[1]"),
    ({"model": "\ud800"}, "model"),
    ({"divergence": "forward_kl\udfff"}, "divergence"),
    ({"max_tokens": "2"}, "max_tokens"),
    ({"max_tokens": 2.5}, "max_tokens"),
    ({"weights": ["0.5", "0.3", "0.2"]}, "weights[0]"),
    ({"weights": [True, False, False]}, "weights[0]"),
    ({"temperature": "0.5"}, "temperature"),
    ({"stream": "true"}, "stream"),
    ({"seed": "7"}, "seed"),
    (content(" \n\t "), "messages[0].content"),
    (content(""), "messages[0].content"),
    (content([{"type": "text", "text": "  "}]), "messages[0].content"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
])
def test_bad_values_are_400_naming_the_field(server, body, param):
    response = post(server, {**content("hello"), "max_tokens": 3, **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error


@pytest.mark.parametrize("prompt,param", [("  ", "prompt"), (["hello", "\t\n"], "prompt[1]"),
                                          ("\ud800", "prompt"), (["fine", "\udc00"], "prompt[1]")])
def test_bad_completion_prompts_are_400(server, prompt, param):
    response = post(server, {"prompt": prompt, "max_tokens": 3}, path="/v1/completions")
    assert response.status_code == 400 and response.json()["error"]["param"] == param, response.text


def test_a_lone_surrogate_in_a_field_name_is_a_400_not_a_500(server):
    response = post(server, {**content("hello"), "\ud800": 1})
    assert response.status_code == 400 and "not valid Unicode" in response.json()["error"]["message"]


def test_strict_types_name_what_was_sent(server):
    error = post(server, {**content("hello"), "max_tokens": "2"}).json()["error"]
    assert "integer" in error["message"] and "got a string" in error["message"]


def test_values_at_the_edges_of_the_ranges_are_accepted(server):
    """Two prompts, so the second stream's seed (seed + 1) leaves the signed range: torch must still take it."""
    for seed in (2**63 - 1, -(2**63)):
        response = post(server, {"prompt": ["hello", "what is a cat"], "max_tokens": 3, "seed": seed,
                                 "temperature": 1.0, "weights": [1, 0, 0]}, path="/v1/completions")
        assert response.status_code == 200, response.text
    assert post(server, {**content(" leading space is text"), "max_tokens": 3}).status_code == 200


# ----- a request that can never be queued is a 400, not a retryable 429 -----

def test_more_prompts_than_the_queue_holds_is_a_400_that_names_the_limit(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="-", max_retries=2, timeout=30)
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="mod", prompt=["hello"] * 5, max_tokens=2)
    assert (info.value.param, info.value.code) == ("prompt", "too_many_prompts")
    assert "at most 4" in info.value.body["message"]
    assert len(client.completions.create(model="mod", prompt=["hello"] * 4, max_tokens=2).choices) == 4


def test_more_prompts_than_a_batch_holds_wait_for_a_place(policies):
    with BackgroundServer(create_app(MOD(policies), max_batch_size=2, max_queue=8)) as srv:
        response = post(srv, {"prompt": ["hello"] * 5, "max_tokens": 2}, path="/v1/completions")
        assert response.status_code == 200 and len(response.json()["choices"]) == 5
        assert max(srv.app.state.scheduler.batch_sizes) <= 2


# ----- a policy name means that policy alone -----

def test_weights_beside_a_policy_name_are_a_400(server):
    response = post(server, {**content("hello"), "model": "lora1", "weights": [0.2, 0.3, 0.5], "max_tokens": 3})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("weights", "weights_with_single_policy")
    assert "'mod'" in error["message"]
    assert post(server, {**content("hello"), "model": "lora1", "max_tokens": 3}).status_code == 200
    assert post(server, {**content("hello"), "model": "mod", "weights": [0.2, 0.3, 0.5],
                         "max_tokens": 3}).status_code == 200


# ----- Host names (DNS rebinding) -----

@pytest.mark.parametrize("host,allowed", [
    ("attacker.example", False), ("attacker.example:8000", False), ("localhost.attacker.example", False),
    ("127.0.0.1.nip.io", False), ("localhost:1234", True), ("LOCALHOST", True), ("127.0.0.1:8000", True),
    ("[::1]:8000", True), ("app.localhost", True), ("10.1.2.3:8000", True), ("localhost:http", False),
])
def test_only_known_host_names_are_answered(server, host, allowed):
    for method, path in (("GET", "/health"), ("GET", "/"), ("GET", "/v1/models")):
        response = httpx.request(method, server.url + path, headers={"Host": host}, timeout=30)
        if allowed:
            assert response.status_code == 200, (path, response.text)
        else:
            assert response.status_code == 421, (path, response.text)
            assert response.json()["error"]["code"] == "host_not_allowed"
            assert "--allowed-hosts" in response.json()["error"]["message"]


def test_allowed_hosts_add_names(policies):
    app = create_app(MOD(policies), allowed_hosts=["gpu-box.lan", "*.example.com"])
    client = TestClient(app, base_url="http://localhost")
    for host, status in [("gpu-box.lan:8000", 200), ("GPU-BOX.LAN.", 200), ("a.example.com", 200),
                         ("example.com", 421), ("other.lan", 421)]:
        assert client.get("/health", headers={"Host": host}).status_code == status, host
    anyone = TestClient(create_app(MOD(policies), allowed_hosts=["*"]), base_url="http://attacker.example")
    assert anyone.get("/health").status_code == 200


@pytest.mark.parametrize("hosts", ["gpu-box.lan", ["gpu-box.lan:8000"], [""], ["a b"], [3]])
def test_bad_allowed_hosts_are_rejected(hosts):
    with pytest.raises(ConfigError, match="allowed_hosts"):
        ServerSettings(allowed_hosts=hosts)


# ----- API keys -----

def test_401_says_how_to_authenticate(policies):
    client = TestClient(create_app(MOD(policies), api_key="k"), base_url="http://localhost")
    response = client.get("/v1/models")
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/models", headers={"Authorization": "Bearer k"}).status_code == 200


@pytest.fixture
def served(monkeypatch, tmp_path, base_a):
    """`moddecode serve` with uvicorn.run replaced: returns the CLI result and the app it would serve."""
    import uvicorn

    config = tmp_path / "set.yaml"
    config.write_text(f"policies: [{{name: a, source: '{base_a}'}}]\nserver: {{allowed_hosts: [yaml.lan]}}\n")
    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: started.update(app=app, **kwargs))
    monkeypatch.delenv("MODDECODE_API_KEY", raising=False)

    def serve(*args):
        result = CliRunner().invoke(cli_app, ["serve", str(config), *args])
        return result, started.get("app")
    return serve


def models_status(app, key=None, host="localhost"):
    headers = {"Host": host, **({"Authorization": f"Bearer {key}"} if key else {})}
    return TestClient(app, base_url="http://localhost").get("/v1/models", headers=headers).status_code


def test_serve_reads_the_key_from_a_file_and_answers_the_configured_hosts(served, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("s3cret\n")
    result, app = served("--api-key-file", str(key_file), "--host", "gpu-box.lan", "--allowed-hosts", "a.lan, b.lan")
    assert result.exit_code == 0, result.output
    assert models_status(app) == 401 and models_status(app, "s3cret") == 200
    for host in ("gpu-box.lan", "a.lan", "b.lan:8000", "yaml.lan"):
        assert models_status(app, "s3cret", host) == 200, host
    assert models_status(app, "s3cret", "c.lan") == 421


def test_serve_reads_the_key_from_the_environment(served, monkeypatch):
    monkeypatch.setenv("MODDECODE_API_KEY", "from-env")
    result, app = served()
    assert result.exit_code == 0, result.output
    assert models_status(app) == 401 and models_status(app, "from-env") == 200


def test_serve_warns_that_a_key_on_the_command_line_shows_in_ps(served, caplog):
    with caplog.at_level(logging.WARNING, logger="moddecode.server"):
        result, app = served("--api-key", "visible")
    assert result.exit_code == 0 and models_status(app, "visible") == 200
    assert any("ps" in r.getMessage() and "--api-key-file" in r.getMessage() for r in caplog.records)
    help_text = " ".join(CliRunner().invoke(cli_app, ["serve", "--help"], terminal_width=200).output.split())
    assert "--api-key-file" in help_text and "`ps`" in help_text and "--allowed-hosts" in help_text


@pytest.mark.parametrize("write,args,message", [
    (None, ["--api-key-file", "{dir}/missing"], "cannot read the API key file"),
    ("\n", ["--api-key-file", "{dir}/key"], "is empty"),
    ("k", ["--api-key-file", "{dir}/key", "--api-key", "k"], "not both"),
    ("two words", ["--api-key-file", "{dir}/key"], "no spaces"),
    (None, ["--allowed-hosts", "a.lan:80"], "allowed_hosts"),
])
def test_serve_rejects_bad_keys_and_hosts_in_one_line(served, tmp_path, write, args, message):
    if write is not None:
        (tmp_path / "key").write_text(write)
    result, app = served(*(a.format(dir=tmp_path) for a in args))
    assert result.exit_code == 2 and app is None
    assert message in result.stderr and result.stderr.startswith("error: ") and "Traceback" not in result.output
