"""`moddecode serve --engine vllm`: the HTTP server on vLLM's async engine answers exactly what the
transformers engine decodes, alone and under concurrent load, streams the same text, refuses what vLLM
cannot do with a 4xx, and aborts a row whose client hung up.

One server (one vLLM engine core) for the module, built from a policy set with `engine: vllm`.
Expected texts come from the transformers engine over the same bundled adapters (`hf_mod`).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import needs_vllm

pytestmark = [needs_vllm, pytest.mark.slow]
httpx = pytest.importorskip("httpx")

PROMPTS = ["Write a sentence about the sea.", "What is the capital of France?", "Name a fast animal."]
WEIGHTINGS = [(1.0, 0.0, 0.0), (0.2, 0.5, 0.3), (1 / 3, 1 / 3, 1 / 3), (0.6, 0.1, 0.3)]
N = 10  # new tokens per comparison


@pytest.fixture(scope="module")
def server():
    from moddecode.adapters import DEMO_ADAPTERS, bundled_adapter
    from moddecode.server import BackgroundServer
    from moddecode.server.serve import build_app

    policy_set = {
        "name": "mod", "engine": "vllm",
        "engine_options": {"enforce_eager": True, "max_model_len": 512, "kv_cache_memory_bytes": 2**30},
        "policies": [{"name": n, "source": "smollm2", "adapter": str(bundled_adapter(n))} for n in DEMO_ADAPTERS],
        "reference": {"source": "smollm2"},
        "server": {"max_tokens_limit": 64, "batch_window_ms": 20},
    }
    app = build_app(policy_set)
    assert app.state.mod.engine.name == "vllm"
    with BackgroundServer(app) as running:
        engine = app.state.mod.engine
        assert engine.max_model_len == 512 and engine.kv_blocks > 0  # engine_options reached vLLM; rows reserve KV
        yield running


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=300) as client:
        yield client


def complete(http, prompt, weights, **body) -> dict:
    response = http.post("/v1/completions", json={"model": "mod", "prompt": prompt, "weights": list(weights),
                                                  "max_tokens": N, **body})
    assert response.status_code == 200, response.text
    return response.json()


def stream_text(http, path: str, body: dict) -> tuple[dict[int, str], list[str]]:
    """Concatenated text per choice index of a streamed answer, and the finish reasons."""
    texts, finishes = {}, []
    with http.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:])["choices"]:
                piece = choice.get("text") if "text" in choice else choice["delta"].get("content")
                texts[choice["index"]] = texts.get(choice["index"], "") + (piece or "")
                if choice.get("finish_reason"):
                    finishes.append(choice["finish_reason"])
    return texts, finishes


@pytest.fixture(scope="module")
def expected(hf_mod):
    """The transformers engine's greedy texts: every (prompt, weighting) as plain text, two as chats."""
    rows = [(p, w) for w in WEIGHTINGS for p in PROMPTS]
    plain = hf_mod.generate([p for p, _ in rows], [w for _, w in rows], max_new_tokens=N)
    chatted = [(PROMPTS[0], WEIGHTINGS[1]), (PROMPTS[1], WEIGHTINGS[2])]  # the ones the tests ask as chats
    chats = hf_mod.generate([[{"role": "user", "content": p}] for p, _ in chatted], [w for _, w in chatted],
                            max_new_tokens=N)
    return {"text": dict(zip(rows, plain)), "chat": dict(zip(chatted, chats))}


def test_completion_and_chat_equal_the_transformers_engine(http, expected):
    p, w = PROMPTS[0], WEIGHTINGS[1]
    body = complete(http, p, w)
    assert body["choices"][0]["text"] == expected["text"][p, w]
    assert body["divergence"] == "reverse_kl" and body["usage"]["completion_tokens"] >= 1
    chat = http.post("/v1/chat/completions", json={"model": "mod", "weights": list(w), "max_tokens": N,
                                                   "messages": [{"role": "user", "content": p}]})
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["content"] == expected["chat"][p, w]
    # a policy name means that policy alone
    solo = http.post("/v1/completions", json={"model": "concise", "prompt": p, "max_tokens": N}).json()
    assert solo["choices"][0]["text"] == expected["text"][p, WEIGHTINGS[0]]


def test_streamed_chunks_add_up_to_the_whole_answer(http, expected):
    p, w = PROMPTS[1], WEIGHTINGS[2]
    texts, finishes = stream_text(http, "/v1/completions", {"model": "mod", "prompt": p, "weights": list(w),
                                                            "max_tokens": N})
    whole = complete(http, p, w)["choices"][0]  # the same request, not streamed
    assert texts == {0: expected["text"][p, w]} == {0: whole["text"]}
    assert finishes == [whole["finish_reason"]]  # "stop" or "length": the adapters decide, not the test
    texts, _ = stream_text(http, "/v1/chat/completions", {
        "model": "mod", "weights": list(w), "max_tokens": N, "messages": [{"role": "user", "content": p}]})
    assert texts == {0: expected["chat"][p, w]}


def test_concurrent_requests_each_equal_their_solo_result(http, expected):
    """12 requests at once (different weights and prompts, every other one streamed) share vLLM's batches."""
    rows = [(p, w) for w in WEIGHTINGS for p in PROMPTS]

    def one(i: int) -> str:
        p, w = rows[i]
        if i % 2:
            return stream_text(http, "/v1/completions", {"model": "mod", "prompt": p, "weights": list(w),
                                                         "max_tokens": N})[0][0]
        return complete(http, p, w)["choices"][0]["text"]

    with ThreadPoolExecutor(len(rows)) as pool:
        got = list(pool.map(one, range(len(rows))))
    assert got == [expected["text"][r] for r in rows]
    assert http.get("/health").json()["scheduler"]["max_running"] > 1  # they really were decoded together


def test_several_prompts_and_seeded_choices(http, expected):
    w = WEIGHTINGS[3]
    body = complete(http, PROMPTS, w)
    assert [c["text"] for c in sorted(body["choices"], key=lambda c: c["index"])] == \
        [expected["text"][p, w] for p in PROMPTS]
    sampled = dict(prompt=PROMPTS[0], weights=list(w), max_tokens=N, temperature=0.9, seed=11)
    both = complete(http, **sampled, n=2)["choices"]
    assert complete(http, **{**sampled, "seed": 12})["choices"][0]["text"] == both[1]["text"]  # choice k: seed+k
    assert complete(http, **sampled)["choices"][0]["text"] == both[0]["text"]


def test_stop_strings_cut_the_text_like_the_transformers_engine(http, hf_mod, expected):
    p, w = PROMPTS[0], WEIGHTINGS[1]
    full = expected["text"][p, w]
    stop = full.split()[2]
    body = complete(http, p, w, stop=[stop])
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["text"] == full[:full.index(stop)] == hf_mod.generate(p, w, max_new_tokens=N,
                                                                                    stop=[stop])


@pytest.mark.parametrize("body, param, message", [
    ({"strategy": "beam", "num_beams": 2}, "strategy", "transformers engine"),
    ({"logprobs": 2}, "logprobs", "transformers engine"),
    ({"weights": [0.5, 0.5]}, "weights", "for 3 policies"),
    ({"prompt": "word " * 600}, None, "max_model_len 512"),
])
def test_bad_input_is_a_4xx_naming_the_fix(http, body, param, message):
    response = http.post("/v1/completions", json={"model": "mod", "prompt": PROMPTS[0], "weights": [1, 0, 0],
                                                  "max_tokens": 4, **body})
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert message in error["message"]
    assert error["param"] == param


def test_a_hang_up_aborts_the_rows_on_vllm(server, http):
    engine = server.app.state.mod.engine
    cancelled = http.get("/health").json()["scheduler"]["rows_cancelled"]
    body = {"model": "mod", "prompt": PROMPTS[2], "weights": [0.5, 0.25, 0.25], "max_tokens": 64,
            "ignore_eos": True, "stream": True}
    with httpx.Client(base_url=server.url, timeout=300) as other:
        with other.stream("POST", "/v1/completions", json=body) as response:
            next(line for line in response.iter_lines() if line.startswith("data: "))  # decoding has started
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stats = http.get("/health").json()["scheduler"]
        if stats["rows_cancelled"] > cancelled and stats["running"] == 0 and engine.async_llm.get_num_unfinished_requests() == 0:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the hung-up row kept decoding: {stats}")
    assert complete(http, PROMPTS[2], [1, 0, 0])["choices"][0]["finish_reason"] in ("stop", "length")
