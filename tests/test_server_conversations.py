"""Full conversations, several choices per prompt (`n`) and log-probs, through the OpenAI client."""

from __future__ import annotations

import math

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

import torch  # noqa: E402

from moddecode import MOD, Policy, combine_logprobs  # noqa: E402
from moddecode.policy import ModelCache  # noqa: E402
from moddecode.server import BackgroundServer, create_app  # noqa: E402

pytestmark = pytest.mark.timeout(120)
WEIGHTS = [0.3, 0.3, 0.4]
CHAT = [{"role": "system", "content": "answer briefly"}, {"role": "user", "content": "what is a cat"},
        {"role": "assistant", "content": "a small animal"}, {"role": "user", "content": "and a dog?"}]


@pytest.fixture(scope="module")
def mod(base_a, adapters):
    cache = ModelCache()
    return MOD([Policy.load(str(base_a), adapter=adapters[0], name="lora0", cache=cache),
                Policy.load(str(base_a), adapter=adapters[1], name="lora1", cache=cache),
                Policy.load(str(base_a), system_prompt="please be funny", name="funny", cache=cache)])


@pytest.fixture(scope="module")
def client(mod):
    with BackgroundServer(create_app(mod, max_tokens_limit=64)) as server:
        yield openai.OpenAI(base_url=server.url + "/v1", api_key="-", max_retries=0, timeout=60)


def create(client, messages, **kwargs):
    extra = {"weights": WEIGHTS, **kwargs.pop("extra", {})}
    return client.chat.completions.create(model="mod", messages=messages, extra_body=extra, **kwargs)


def test_a_multi_turn_conversation_is_answered_as_the_library_does(client, mod):
    got = create(client, CHAT, max_tokens=8, temperature=0)
    assert got.choices[0].message.content == mod.generate([CHAT], WEIGHTS, max_new_tokens=8)[0]
    # and it is a different prompt from its last user message alone
    funny = mod.policies[2]
    assert funny.encode(CHAT) != funny.encode(CHAT[-1]["content"])


def test_the_policys_system_prompt_comes_first_then_the_requests(mod):
    funny, plain = mod.policies[2], mod.policies[0]
    assert funny.messages(CHAT)[0] == {"role": "system", "content": "please be funny\n\nanswer briefly"}
    assert plain.messages(CHAT)[0] == {"role": "system", "content": "answer briefly"}
    assert [m["role"] for m in funny.messages(CHAT)] == ["system", "user", "assistant", "user"]


def test_n_choices_sample_distinct_seeded_streams(client, mod):
    got = create(client, CHAT[1:2], max_tokens=8, temperature=1.0, seed=5, n=3)
    texts = [c.message.content for c in got.choices]
    assert [c.index for c in got.choices] == [0, 1, 2]
    # choice k draws from seed + k: the same as prompt k of one library call with that seed
    expected = mod.generate([CHAT[1:2]] * 3, WEIGHTS, max_new_tokens=8, strategy="sample", seed=5, temperature=1.0)
    assert texts == expected
    assert got.usage.completion_tokens > 0
    again = create(client, CHAT[1:2], max_tokens=8, temperature=1.0, seed=5, n=3)
    assert [c.message.content for c in again.choices] == texts


def test_logprobs_are_those_of_the_combined_distribution(client, mod):
    got = create(client, CHAT[1:2], max_tokens=4, temperature=0, logprobs=True, top_logprobs=2,
                 extra={"ignore_eos": True, "scope": "token"})
    content = got.choices[0].logprobs.content
    assert len(content) == 4
    for entry in content:
        assert entry.token == entry.top_logprobs[0].token and len(entry.top_logprobs) == 2  # greedy: the best
        assert entry.logprob <= 0 and bytes(entry.bytes).decode("utf-8", "replace") == entry.token
    members = mod.engine.rows().add([CHAT[1:2]])[:, 0].double()
    first = torch.log_softmax(combine_logprobs(members, WEIGHTS), -1)
    assert math.isclose(content[0].logprob, float(first.max()), abs_tol=1e-5)
    streamed = create(client, CHAT[1:2], max_tokens=4, temperature=0, logprobs=True, stream=True,
                      extra={"ignore_eos": True, "scope": "token"})
    tokens = [e.token for chunk in streamed if chunk.choices and chunk.choices[0].logprobs
              for e in chunk.choices[0].logprobs.content]
    assert tokens == [e.token for e in content]


def test_completions_logprobs_use_the_legacy_shape(client):
    got = client.completions.create(model="mod", prompt="what is a cat", max_tokens=3, temperature=0, logprobs=2,
                                    extra_body={"weights": WEIGHTS, "ignore_eos": True})
    lp = got.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 3
    assert all(len(top) <= 2 for top in lp.top_logprobs) and lp.text_offset[0] == 0


@pytest.mark.parametrize("body,param", [
    ({"logprobs": True, "extra": {"strategy": "beam"}}, "logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"n": 0}, "n"),
])
def test_what_cannot_be_served_is_a_400(client, body, param):
    body = dict(body)
    extra = body.pop("extra", {})
    with pytest.raises(openai.BadRequestError) as info:
        create(client, CHAT[1:2], max_tokens=3, extra=extra, **body)
    assert info.value.param == param or (param == "top_logprobs" and "top_logprobs" in info.value.body["message"])
