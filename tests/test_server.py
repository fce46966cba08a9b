"""The HTTP server end to end: a real uvicorn on a free loopback port, tiny models, the official client.

Expected texts always come from the library itself (`MOD.generate` on the same policies), computed
while the server is idle: the model is shared with the server's decode thread and is not re-entrant.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

import torch  # noqa: E402

from moddecode import MOD, DecodingConfig, InfeasibleWeightsError, Policy  # noqa: E402
from moddecode.config import load_policy_set  # noqa: E402
from moddecode.errors import ConfigError  # noqa: E402
from moddecode.policy import ModelCache  # noqa: E402
from moddecode.server import BackgroundServer, create_app  # noqa: E402
from moddecode.server.scheduler import Job, Scheduler  # noqa: E402
from gated import GatedMOD  # noqa: E402
from moddecode.server.serve import build_app  # noqa: E402

pytestmark = pytest.mark.timeout(120)

KEY = "test-key"
PROMPTS = ["tell me about the sky", "what is a cat", "hello", "why is the dog happy", "please tell me a short answer"]
USER = [{"role": "user", "content": PROMPTS[0]}]


@pytest.fixture(scope="module")
def model_cache():
    return ModelCache()


@pytest.fixture(scope="module")
def policies(base_a, adapters, model_cache):
    """Two LoRA adapters and a prompted policy of one tiny base (one batched forward per step)."""
    return [
        Policy.load(str(base_a), adapter=adapters[0], name="lora0", cache=model_cache),
        Policy.load(str(base_a), adapter=adapters[1], name="lora1", cache=model_cache),
        Policy.load(str(base_a), system_prompt="please be funny", name="funny", cache=model_cache),
    ]


@pytest.fixture(scope="module")
def reference(base_a, model_cache):
    """The plain base model as pi_ref (same loaded model as the policies)."""
    return Policy.load(str(base_a), name="reference", cache=model_cache)


@pytest.fixture(scope="module")
def mod(policies, reference):
    return MOD(policies, reference=reference)


@pytest.fixture(scope="module")
def server(mod):
    app = create_app(mod, api_key=KEY, max_body_bytes=20_000, max_tokens_limit=64, batch_window_ms=50,
                     max_batch_size=64)
    with BackgroundServer(app) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def solo(mod: MOD, prompt: str, weights, *, divergence: str = "reverse_kl", **kwargs):
    """What the library gives this request alone (Generation with text, token ids and finish reason)."""
    alone = mod if divergence == mod.divergence.name else MOD(mod.policies, reference=mod.reference,
                                                              divergence=divergence)
    return alone.generate(prompt, weights, return_diagnostics=True, **kwargs)


def chat(client, weights, prompt=PROMPTS[0], **kwargs):
    extra = {"weights": weights, **kwargs.pop("extra", {})}
    return client.chat.completions.create(model="mod", messages=[{"role": "user", "content": prompt}],
                                          extra_body=extra, **kwargs)


def assert_still_serving(client, mod):
    """After a rejected request, an ordinary one still gets the library's answer."""
    expected = solo(mod, PROMPTS[1], [0.2, 0.3, 0.5], max_new_tokens=6)
    got = chat(client, [0.2, 0.3, 0.5], PROMPTS[1], max_tokens=6, temperature=0)
    assert got.choices[0].message.content == expected.text


# ----- happy paths -----

def test_models_lists_the_policy_set_and_its_objectives(client, policies):
    models = client.models.list().data
    ids = [m.id for m in models]
    assert ids == ["mod", *(p.name for p in policies)]
    card = models[0].model_dump()
    assert [p["name"] for p in card["policies"]] == [p.name for p in policies]
    assert card["has_reference"] is True and "jsd" in card["divergences"]
    assert card["limits"] == {"max_tokens": 64, "context_window": 256}


@pytest.mark.parametrize("divergence,weights", [("reverse_kl", [0.2, 0.3, 0.5]), ("forward_kl", [0.6, 0.1, 0.3]),
                                                ("jsd", [0.5, 0.5, 0.0]), ("alpha:0.5", [0.3, 0.3, 0.4]),
                                                ("reverse_kl", [1.2, 0.4, -0.3])])
def test_chat_completion_equals_the_library(client, mod, divergence, weights):
    expected = solo(mod, PROMPTS[0], weights, divergence=divergence, max_new_tokens=12)
    got = chat(client, weights, max_tokens=12, temperature=0, extra={"divergence": divergence})
    choice = got.choices[0]
    assert choice.message.content == expected.text
    assert choice.finish_reason == expected.finish_reason
    assert got.usage.completion_tokens == len(expected.token_ids)
    assert got.model_extra["weights"] == pytest.approx(weights) and got.model_extra["divergence"] == divergence


def test_streamed_chat_joins_to_the_same_text_and_reports_usage(client, mod):
    weights = [0.1, 0.6, 0.3]
    expected = solo(mod, PROMPTS[3], weights, max_new_tokens=16)
    stream = chat(client, weights, PROMPTS[3], max_tokens=16, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == expected.text
    assert finish == [expected.finish_reason]
    assert chunks[-1].usage.completion_tokens == len(expected.token_ids)
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1, "text should arrive in pieces"


def test_text_completions_answer_each_prompt(client, mod):
    weights = [0.3, 0.3, 0.4]
    expected = [solo(mod, p, weights, max_new_tokens=10).text for p in PROMPTS[:3]]
    got = client.completions.create(model="mod", prompt=PROMPTS[:3], max_tokens=10, temperature=0,
                                    extra_body={"weights": weights})
    assert [c.text for c in sorted(got.choices, key=lambda c: c.index)] == expected
    streamed = ["", "", ""]
    for chunk in client.completions.create(model="mod", prompt=PROMPTS[:3], max_tokens=10, stream=True,
                                           extra_body={"weights": weights}):
        for choice in chunk.choices:
            streamed[choice.index] += choice.text
    assert streamed == expected


def test_a_policy_name_as_model_means_that_policy_alone(client, mod):
    expected = solo(mod, PROMPTS[2], [0.0, 1.0, 0.0], max_new_tokens=10)
    got = client.chat.completions.create(model="lora1", messages=[{"role": "user", "content": PROMPTS[2]}],
                                         max_tokens=10, temperature=0)
    assert got.choices[0].message.content == expected.text and got.model == "lora1"


def test_beam_search_equals_the_library(client, mod):
    weights = [0.5, 0.2, 0.3]
    expected = solo(mod, PROMPTS[4], weights, strategy="beam", num_beams=3, max_new_tokens=8)
    got = chat(client, weights, PROMPTS[4], max_tokens=8, extra={"strategy": "beam", "num_beams": 3})
    assert got.choices[0].message.content == expected.text


def test_concurrent_requests_are_batched_and_each_equals_its_solo_result(client, mod, server):
    """32 requests with distinct weights, prompts and token limits, half of them streamed."""
    requests = []
    for i in range(32):
        a, b = 0.05 + 0.8 * i / 31, 0.05 + 0.1 * (i % 4)
        requests.append((PROMPTS[i % len(PROMPTS)], [a, b, 1.0 - a - b + 0.1 * (i % 3)], 4 + i % 9, i % 2 == 0))
    expected = [solo(mod, p, w, max_new_tokens=n).text for p, w, n, _ in requests]  # while the server is idle
    scheduler = server.app.state.scheduler
    before, started = len(scheduler.batch_sizes), scheduler.rows_started
    start = threading.Barrier(len(requests))

    def send(request):
        prompt, weights, n, stream = request
        start.wait()
        if stream:
            return "".join(c.choices[0].delta.content or "" for c in chat(client, weights, prompt, max_tokens=n,
                                                                           temperature=0, stream=True))
        return chat(client, weights, prompt, max_tokens=n, temperature=0).choices[0].message.content

    with ThreadPoolExecutor(len(requests)) as pool:
        got = list(pool.map(send, requests))
    assert got == expected
    sizes = list(scheduler.batch_sizes)[before:]  # rows per decode step
    assert scheduler.rows_started - started == len(requests)  # every request decoded exactly once
    assert max(sizes) > 1, f"requests were not batched together: rows per step {sizes}"


def test_seeded_sampling_is_reproducible_under_concurrency(client, mod):
    """A seeded sampled request is decoded alone, so batching cannot change its random draws."""
    weights = [0.4, 0.4, 0.2]
    expected = [solo(mod, PROMPTS[0], weights, strategy="sample", seed=s, temperature=1.0, max_new_tokens=10).text
                for s in range(6)]
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda s: chat(client, weights, max_tokens=10, temperature=1.0, seed=s)
                            .choices[0].message.content, range(6)))
    assert got == expected


def test_client_disconnect_mid_stream_leaves_the_server_serving(server, client, mod):
    body = {"model": "mod", "messages": USER, "max_tokens": 64, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as response:
        assert response.status_code == 200
        next(response.iter_lines())  # read one event, then hang up
    assert_still_serving(client, mod)


# ----- bad input: a 4xx in OpenAI's error shape, and the server keeps serving -----

@pytest.mark.parametrize("extra,kwargs,param,code", [
    ({"wieghts": [1, 0, 0]}, {}, "wieghts", "extra_forbidden"),
    ({"weights": [0.5, 0.5]}, {}, "weights", "invalid_weights"),
    ({"divergence": "forward_k"}, {}, "divergence", "unknown_name"),
    ({"divergence": "forward_kl", "weights": [-1.0, -1.0, -1.0]}, {}, "weights", "infeasible_weights"),
    ({}, {"max_tokens": 65}, "max_tokens", "max_tokens_too_large"),
    ({}, {"n": 17}, "n", "invalid_value"),
    ({}, {"presence_penalty": 0.5}, "presence_penalty", "invalid_value"),
    ({"strategy": "sample"}, {"temperature": 0}, "temperature", "invalid_value"),
])
def test_bad_requests_get_400(client, mod, extra, kwargs, param, code):
    extra = dict(extra)
    weights = extra.pop("weights", [0.3, 0.3, 0.4])
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, weights, **{"max_tokens": 5, **kwargs}, extra=extra)
    assert info.value.status_code == 400
    assert (info.value.param, info.value.code) == (param, code)
    assert info.value.body["message"] and info.value.type == "invalid_request_error"
    assert_still_serving(client, mod)


def test_nan_weight_is_rejected(server, client, mod):
    body = '{"model": "mod", "messages": [{"role": "user", "content": "hello"}], "weights": [0.5, NaN, 0.5]}'
    response = httpx.post(server.url + "/v1/chat/completions", content=body, timeout=30,
                          headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "weights[1]"
    assert_still_serving(client, mod)


@pytest.mark.parametrize("messages,param", [
    ([{"role": "user", "content": "hello"}, {"role": "system", "content": "be brief"},
      {"role": "user", "content": "again"}], "messages[1].role"),  # system turns come first
    ([{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}], "messages[1].role"),
    ([{"role": "user", "content": "hello"}, {"role": "tool", "content": "42"},
      {"role": "user", "content": "and?"}], "messages[1].role"),
])
def test_chat_conversations_that_cannot_be_answered_are_rejected(client, messages, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="mod", messages=messages, max_tokens=4)
    assert info.value.param == param and info.value.code == "unsupported_messages"


@pytest.mark.parametrize("words,max_tokens,param", [(300, None, "messages"), (220, 60, "max_tokens")])
def test_prompts_beyond_the_context_window_are_rejected(client, mod, words, max_tokens, param):
    long_prompt = " ".join(["the cat sat on the mat"] * (words // 6))
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, [0.3, 0.3, 0.4], long_prompt, **({"max_tokens": max_tokens} if max_tokens else {}))
    assert (info.value.param, info.value.code) == (param, "context_length_exceeded")
    assert_still_serving(client, mod)


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4", messages=USER, max_tokens=4)
    assert info.value.code == "model_not_found"


def test_oversized_bodies_get_413(server, client, mod):
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    big = json.dumps({"model": "mod", "prompt": "hello " * 5000}).encode()
    declared = httpx.post(server.url + "/v1/completions", content=big, headers=headers, timeout=30)

    def chunks():  # no Content-Length: the limit must hold while the body streams in
        for start in range(0, len(big), 4096):
            yield big[start:start + 4096]

    streamed = httpx.post(server.url + "/v1/completions", content=chunks(), headers=headers, timeout=30)
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"
    assert_still_serving(client, mod)


def test_api_key_is_required_except_for_health(server, mod):
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError) as info:
        wrong.models.list()
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    missing = httpx.post(server.url + "/v1/chat/completions", json={"messages": USER}, timeout=30)
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    health = httpx.get(server.url + "/health", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_without_a_reference_jsd_and_off_simplex_weights_are_rejected(policies):
    with BackgroundServer(create_app(MOD(policies))) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=30)
        for weights, divergence in [([0.5, 0.5, 0.0], "jsd"), ([1.0, 1.0, 0.0], "reverse_kl")]:
            with pytest.raises(openai.BadRequestError) as info:
                chat(client, weights, max_tokens=4, extra={"divergence": divergence})
            assert (info.value.param, info.value.code) == ("weights", "missing_reference")
        assert chat(client, [0.5, 0.5, 0.0], max_tokens=4, temperature=0).choices[0].message.content is not None


def wait_for(server, predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate(httpx.get(server.url + "/health", timeout=10).json()["scheduler"]):
        assert time.monotonic() < deadline, "server never reached the expected state"
        time.sleep(0.02)


def test_full_queue_answers_429_and_then_recovers(policies):
    gated = GatedMOD(policies)
    body = {"model": "mod", "messages": USER, "max_tokens": 4}
    with BackgroundServer(create_app(gated, max_queue=1, batch_window_ms=0)) as srv, ThreadPoolExecutor(2) as pool:
        try:
            post = lambda: httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=60)  # noqa: E731
            running = pool.submit(post)
            wait_for(srv, lambda s: s["running"] == 1)  # taken by the decoder, blocked at the gate
            queued = pool.submit(post)
            wait_for(srv, lambda s: s["queued"] == 1)  # the queue (size 1) is now full
            rejected = post()
            assert rejected.status_code == 429
            assert rejected.json()["error"]["code"] == "queue_full" and rejected.headers["retry-after"]
        finally:
            gated.gate.set()
        assert running.result().status_code == 200 and queued.result().status_code == 200
        assert post().status_code == 200


def test_a_failing_row_does_not_fail_the_rows_batched_with_it(mod):
    """One infeasible row in a decode step gets the error; the row decoded beside it goes on."""
    config = DecodingConfig(divergence="forward_kl")
    good = [0.3, 0.3, 0.4]
    expected = solo(mod, PROMPTS[0], good, divergence="forward_kl", max_new_tokens=5).text

    async def run():
        sink = asyncio.Queue()
        scheduler = Scheduler(mod)
        scheduler.start()
        jobs = [Job(0, PROMPTS[0], torch.tensor(good, dtype=torch.float64), config, 5, False, sink),
                Job(1, PROMPTS[0], torch.tensor([-1.0, -1.0, -1.0], dtype=torch.float64), config, 5, False, sink)]
        scheduler.submit(jobs)
        events = {}
        while len(events) < 2:
            event = await sink.get()
            if event.result is not None or event.error is not None:
                events[event.index] = event
        await scheduler.stop()
        return events, scheduler

    events, scheduler = asyncio.run(run())
    assert events[0].result.text == expected
    assert isinstance(events[1].error, InfeasibleWeightsError)
    assert scheduler.batch_sizes[0] == 2  # both rows were in the first step


# ----- policy-set files -----

def write_yaml(path, text):
    path.write_text(text)
    return path


def test_policy_set_yaml_loads_with_relative_paths(tmp_path, base_a, adapters):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "base").symlink_to(base_a)
    (tmp_path / "models" / "lora").symlink_to(adapters[0])
    config = write_yaml(tmp_path / "set.yaml", """
name: tiny-set
policies:
  - {name: tuned, source: models/base, adapter: models/lora, objective: helpfulness}
  - {name: funny, source: models/base, system_prompt: please be funny}
reference: {source: models/base}
divergence: forward-kl
defaults: {max_new_tokens: 7, weights: [0.25, 0.75]}
server: {max_queue: 3}
""")
    mod, meta = load_policy_set(config, cache=ModelCache())
    assert mod.names == ["tuned", "funny"] and meta.objectives == ["helpfulness", "funny"]
    assert meta.name == "tiny-set" and meta.divergence == "forward_kl" and mod.divergence.name == "forward_kl"
    assert mod.reference is not None and mod.policies[0].base is mod.policies[1].base is mod.reference.base
    assert meta.defaults["weights"] == [0.25, 0.75] and meta.server == {"max_queue": 3}


@pytest.mark.parametrize("text,fragment", [
    ("policies: [{name: a, source: X, adaptor: y}]", "Did you mean 'adapter'"),
    ("policies: [{name: a, source: X}, {name: a, source: X}]", "repeated: a"),
    ("policies: []", "non-empty `policies`"),
    ("policies: [{name: a, source: X}]\ndefaults: {max_new_tokens: 0}", "max_new_tokens"),
    ("policies: [{name: a, source: X}]\ndefaults: {weights: [0.5, 0.5]}", "defaults.weights"),
    ("policies: [{name: a, source: X}]\ndivergence: klr", "unknown divergence"),
    ("polices: []", "Did you mean 'policies'"),
])
def test_bad_policy_sets_fail_before_loading_models(tmp_path, text, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        load_policy_set(write_yaml(tmp_path / "bad.yaml", text.replace("X", "/nonexistent/model")))


def test_bad_server_section_is_rejected(tmp_path, base_a):
    config = write_yaml(tmp_path / "s.yaml", f"policies: [{{name: a, source: {base_a}}}]\nserver: {{max_qeue: 3}}")
    with pytest.raises(ConfigError, match="Did you mean 'max_queue'"):
        build_app(config)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_run_server_serves_a_yaml_policy_set(tmp_path, base_a):
    """The entry point `moddecode serve` uses, in a subprocess, with its own port and API key."""
    config = write_yaml(tmp_path / "set.yaml", f"""
policies:
  - {{name: plain, source: {base_a}}}
  - {{name: funny, source: {base_a}, system_prompt: please be funny}}
server: {{max_tokens_limit: 8}}
""")
    port = free_port()
    code = (f"from moddecode.server import run_server; "
            f"run_server({str(config)!r}, port={port}, api_key='k', log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        client = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0, timeout=30)
        assert [m.id for m in client.models.list().data] == ["mod", "plain", "funny"]
        with pytest.raises(openai.BadRequestError, match="limit of 8"):
            chat(client, [0.5, 0.5], max_tokens=9)
        assert chat(client, [0.5, 0.5], max_tokens=8).choices[0].finish_reason in {"stop", "length"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
