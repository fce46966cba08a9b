"""A bounded soak on loopback: a few hundred mixed requests (streamed or not, hung up mid-way, bad ones
among them) against one server. Every good request gets exactly its solo result, nothing leaks (no
rows left running, KV rows freed) and memory stays flat."""

from __future__ import annotations

import json
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from moddecode import MOD, Policy  # noqa: E402
from moddecode.policy import ModelCache  # noqa: E402
from moddecode.server import BackgroundServer, create_app  # noqa: E402

pytestmark = pytest.mark.timeout(600)
PROMPTS = ["tell me about the sky", "what is a cat", "hello", "why is the dog happy"]
WEIGHTINGS = [[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.4, 0.4, 0.2], [0.1, 0.8, 0.1]]
REQUESTS = 200


def kind_of(i: int) -> str:
    return ["plain", "stream", "hangup", "bad", "plain", "stream"][i % 6]


def body_of(i: int) -> dict:
    prompt, weights = PROMPTS[i % 4], WEIGHTINGS[(i // 4) % 4]
    body = {"model": "mod", "messages": [{"role": "user", "content": prompt}], "weights": weights,
            "max_tokens": 3 + i % 6, "temperature": 0}
    if kind_of(i) == "bad":
        body["weights"] = [0.5, "x", 0.5] if i % 12 == 3 else [0.5, 0.5]
    if kind_of(i) in ("stream", "hangup"):
        body["stream"] = True
    if kind_of(i) == "hangup":
        body["max_tokens"], body["ignore_eos"] = 48, True
    return body


def send(url: str, i: int):
    body = body_of(i)
    with httpx.Client(timeout=120) as client:
        if not body.get("stream"):
            response = client.post(url + "/v1/chat/completions", json=body)
            return response.status_code, response.json()
        with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
            text = ""
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                delta = json.loads(line[6:])["choices"][0]["delta"]
                text += delta.get("content") or ""
                if kind_of(i) == "hangup" and text:
                    return response.status_code, None  # leaves the `with`: the connection closes mid-stream
            return response.status_code, text


def test_soak_mixed_requests(base_a, adapters):
    cache = ModelCache()
    mod = MOD([Policy.load(str(base_a), adapter=adapters[0], name="lora0", cache=cache),
               Policy.load(str(base_a), adapter=adapters[1], name="lora1", cache=cache),
               Policy.load(str(base_a), system_prompt="please be funny", name="funny", cache=cache)])
    expected = {(p, tuple(w), n): mod.generate(p, w, max_new_tokens=n) for p in PROMPTS for w in WEIGHTINGS
                for n in range(3, 9)}
    with BackgroundServer(create_app(mod, max_tokens_limit=64, max_batch_size=16)) as server:
        with ThreadPoolExecutor(12) as pool:  # warm-up round, then the measured one
            list(pool.map(lambda i: send(server.url, i), range(24)))
            memory_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            outcomes = list(pool.map(lambda i: send(server.url, i), range(REQUESTS)))
        deadline = time.monotonic() + 30
        while True:
            health = httpx.get(server.url + "/health", timeout=10).json()["scheduler"]
            if health["running"] == 0 and health["queued"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        memory_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        loop = server.app.state.scheduler.loop
    assert health["running"] == 0 and health["queued"] == 0, health
    assert loop.live == [] and all(not group.slots for group in loop.rows.groups)  # no KV rows left behind
    for i, (status, result) in enumerate(outcomes):
        body = body_of(i)
        if kind_of(i) == "bad":
            assert status == 400, (i, status, result)
        elif kind_of(i) == "hangup":
            assert status == 200
        else:
            key = (body["messages"][0]["content"], tuple(body["weights"]), body["max_tokens"])
            text = result if body.get("stream") else result["choices"][0]["message"]["content"]
            assert status == 200 and text == expected[key], (i, text, expected[key])
    # ru_maxrss is in KiB on Linux: the measured round may not grow the peak by more than 200 MiB
    assert memory_after - memory_before < 200 * 1024, (memory_before, memory_after)
