"""Scorers: lexicon scorers by their defining properties, model scorers against hand-run forwards."""

from __future__ import annotations

import socket

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast

import moddecode.eval.scorers as scorers
from moddecode.errors import ConfigError, ModelLoadError, UnknownNameError
from moddecode.eval import get_scorer, register_scorer

WORDS = (
    "user assistant system : Yes No yes no Is is the response helpful and harmless ? Prompt Response Answer "
    "with or . , ! hello how are you I am fine thanks a good day bad what two plus four six it"
).split()
SPECIALS = ["[PAD]", "[UNK]", "<s>", "</s>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant :{% endif %}"
)
PROMPTS = ["hello how are you ?", "what is two plus four ?", "hello", "Is it a good day ?"]
RESPONSES = ["I am fine thanks !", "six", "hello , how are you , I am fine , thanks , it is a good day", "no"]


def make_tokenizer(chat_template: bool = True) -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(SPECIALS)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>", eos_token="</s>"
    )
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def llama_config(**extra) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(SPECIALS) + len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        **extra,
    )


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("reward")
    torch.manual_seed(0)
    LlamaForSequenceClassification(llama_config(num_labels=2)).save_pretrained(path)
    make_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("judge")
    torch.manual_seed(1)
    LlamaForCausalLM(llama_config()).save_pretrained(path)
    make_tokenizer().save_pretrained(path)
    return path


# --- lexicon / statistics scorers ------------------------------------------------------------


def test_vader_orders_sentiment_and_ignores_prompt():
    vader = get_scorer("vader")
    pos, neg, neutral = (
        "I love this, it is wonderful and great!",
        "I hate this, it is terrible and awful.",
        "It is a table.",
    )
    scores = vader.score(["q"] * 3, [pos, neg, neutral])
    assert scores[0] > scores[2] > scores[1]
    assert all(-1 <= s <= 1 for s in scores)
    assert vader.score(["another prompt"], [pos]) == scores[:1]


def test_readability_matches_flesch_formula_offline(monkeypatch):
    # No network: any connection attempt or NLTK download fails the test.
    def no_connect(*args, **kwargs):
        raise AssertionError("the readability scorer tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    import nltk

    monkeypatch.setattr(nltk, "download", no_connect)
    monkeypatch.setattr(scorers, "_cmudict_is_local", lambda: False)  # as on a machine without nltk_data
    scorer = get_scorer({"type": "readability"})
    assert scorer.syllable_source == "pyphen"
    simple = "The cat sat on the mat."
    hard = (
        "Notwithstanding considerable organizational complexity, comprehensive institutional "
        "reconfiguration necessitates extraordinarily meticulous deliberation."
    )
    easy_score, hard_score = scorer.score(["", ""], [simple, hard])
    # Flesch: 206.835 - 1.015 words/sentence - 84.6 syllables/word; 6 one-syllable words, 1 sentence.
    assert easy_score == pytest.approx(206.835 - 1.015 * 6 - 84.6 * 1)
    assert hard_score < easy_score


def test_length_and_conciseness():
    responses = ["", "one", "one two three four", "a b c d e f g h"]
    assert get_scorer("length").score([""] * 4, responses) == [0.0, 1.0, 4.0, 8.0]
    concise = get_scorer({"type": "conciseness", "target_words": 4}).score([""] * 4, responses)
    assert concise[0] == 1.0 and concise[2] == 0.5
    assert all(a > b for a, b in zip(concise, concise[1:]))
    with pytest.raises(ConfigError, match="target_words"):
        get_scorer({"type": "conciseness", "target_words": 0})


def test_batch_shape_is_checked():
    with pytest.raises(ConfigError, match="2 prompts but 1 responses"):
        get_scorer("length").score(["a", "b"], ["x"])
    with pytest.raises(ConfigError, match="list of strings"):
        get_scorer("length").score("a", "b")


# --- registry ---------------------------------------------------------------------------------


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(scorers, "_REGISTRY", dict(scorers._REGISTRY))


def test_unknown_scorer_suggests_close_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'vader'"):
        get_scorer("vadr")
    with pytest.raises(UnknownNameError):
        get_scorer({"type": "no_such_scorer"})


def test_register_plain_callable(registry):
    register_scorer("exclaims", lambda prompts, responses: [r.count("!") for r in responses])
    scorer = get_scorer("exclaims")
    assert scorer.name == "exclaims"
    assert scorer.score(["", ""], ["hi!", "hi!!!"]) == [1.0, 3.0]
    with pytest.raises(ConfigError, match="already registered"):
        register_scorer("exclaims", len)
    with pytest.raises(ConfigError, match="takes no options"):
        get_scorer({"type": "exclaims", "scale": 2})


def test_register_factory_with_options(registry):
    class Scaled:
        def __init__(self, name: str = "scaled", factor: float = 1.0):
            self.name, self.factor = name, factor

        def score(self, prompts, responses):
            return [self.factor * len(r) for r in responses]

    register_scorer("scaled", Scaled)
    scorer = get_scorer({"type": "scaled", "factor": 2.0, "name": "double"})
    assert scorer.name == "double" and scorer.score(["p"], ["abc"]) == [6.0]
    with pytest.raises(ConfigError, match="accepts"):
        get_scorer({"type": "scaled", "factr": 2.0})


def test_option_errors_name_only_the_bad_options():
    with pytest.raises(ConfigError) as info:
        get_scorer({"type": "length", "foo": 1, "name": "words"})
    assert "does not take option ['foo']; it accepts ['name']" in str(info.value)
    with pytest.raises(ConfigError) as info:
        get_scorer({"type": "conciseness", "target_wrds": 3, "colour": 1, "name": "short"})
    assert "does not take options ['colour', 'target_wrds']; it accepts ['name', 'target_words']" in str(info.value)


def test_specs_are_checked_without_building_anything(registry, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from moddecode.eval.scorers import check_scorer_spec

    built = []

    class NeedsModel:
        def __init__(self, model, name: str = "judged"):
            built.append(model)
            self.name = name

        def score(self, prompts, responses):
            return [0.0] * len(responses)

    register_scorer("needs_model", NeedsModel)
    check_scorer_spec({"type": "needs_model", "model": "anything", "name": "x"})
    assert built == []
    with pytest.raises(ConfigError, match=r"scorer 'needs_model' needs \['model'\]"):
        check_scorer_spec({"type": "needs_model"})

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded to check a spec")

    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained", no_loading)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_loading)
    with pytest.raises(ConfigError, match=r"needs \['model'\]"):
        check_scorer_spec({"type": "hf_reward"})
    with pytest.raises(ModelLoadError, match="reward model folder .* does not exist"):
        check_scorer_spec({"type": "hf_reward", "model": str(tmp_path / "missing")})
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="judge model .* is a file"):
        check_scorer_spec({"type": "llm_judge", "model": str(tmp_path / "weights.bin")})
    check_scorer_spec({"type": "llm_judge", "model": str(tmp_path), "question": "Is it kind?"})  # a folder passes
    with pytest.raises(ConfigError, match=r"does not take option \['questoin'\]"):
        check_scorer_spec({"type": "llm_judge", "model": str(tmp_path), "questoin": "Is it kind?"})


def test_callable_returning_wrong_count_is_reported(registry):
    register_scorer("broken", lambda prompts, responses: [1.0])
    with pytest.raises(ConfigError, match="returned 1 scores for 2"):
        get_scorer("broken").score(["a", "b"], ["x", "y"])


def test_spec_without_type():
    with pytest.raises(ConfigError, match="'type'"):
        get_scorer({"model": "x"})


# --- hf_reward ---------------------------------------------------------------------------------


def hand_reward(model, tok, prompt, response, label, chat=True):
    if chat:
        text = tok.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], tokenize=False
        )
        ids = tok(text, add_special_tokens=False)["input_ids"]
    else:
        ids = tok(f"{prompt}\n\n{response}")["input_ids"]
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, label].item()


@pytest.mark.parametrize("label", [0, 1])
def test_hf_reward_matches_unbatched_forward(reward_dir, label):
    scorer = get_scorer({"type": "hf_reward", "model": str(reward_dir), "batch_size": 3, "label_index": label})
    assert scorer.use_chat_template
    model = LlamaForSequenceClassification.from_pretrained(reward_dir).eval()
    tok = make_tokenizer()
    expected = [hand_reward(model, tok, p, r, label) for p, r in zip(PROMPTS, RESPONSES)]
    assert scorer.score(PROMPTS, RESPONSES) == pytest.approx(expected, abs=1e-5)
    one_by_one = get_scorer({"type": "hf_reward", "model": str(reward_dir), "batch_size": 1, "label_index": label})
    assert one_by_one.score(PROMPTS, RESPONSES) == pytest.approx(expected, abs=1e-5)


def test_hf_reward_without_chat_template_joins_with_blank_line(reward_dir):
    model = LlamaForSequenceClassification.from_pretrained(reward_dir).eval()
    tok = make_tokenizer(chat_template=False)
    scorer = scorers.HFRewardScorer(model, tok, batch_size=4)
    assert not scorer.use_chat_template
    expected = [hand_reward(model, tok, p, r, 0, chat=False) for p, r in zip(PROMPTS, RESPONSES)]
    assert scorer.score(PROMPTS, RESPONSES) == pytest.approx(expected, abs=1e-5)


def test_hf_reward_load_errors(reward_dir, tmp_path, monkeypatch):
    with pytest.raises(ModelLoadError, match="does not exist"):
        get_scorer({"type": "hf_reward", "model": str(tmp_path / "missing")})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not a local folder"):
        get_scorer({"type": "hf_reward", "model": "nobody-xyz/no-such-reward-model"})
    with pytest.raises(ConfigError, match="label_index"):
        get_scorer({"type": "hf_reward", "model": str(reward_dir), "label_index": 2})
    model = LlamaForSequenceClassification.from_pretrained(reward_dir)
    with pytest.raises(ConfigError, match="tokenizer"):
        scorers.HFRewardScorer(model)


# --- llm_judge ---------------------------------------------------------------------------------


def hand_judge(model, scorer, prompt, response):
    """p(Yes)/(p(Yes)+p(No)) from one unpadded forward and a full-vocabulary softmax."""
    ids = torch.tensor([scorer.encode(prompt, response)])
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids).logits[0, -1].double(), -1)
    tok = scorer.tokenizer
    p_yes = probs[tok.convert_tokens_to_ids("Yes")]
    p_no = probs[tok.convert_tokens_to_ids("No")]
    return (p_yes / (p_yes + p_no)).item()


def test_llm_judge_matches_hand_computation_and_batches(judge_dir):
    batched = get_scorer(
        {"type": "llm_judge", "model": str(judge_dir), "batch_size": 4, "question": "Is the response good ?"}
    )
    single = get_scorer(
        {"type": "llm_judge", "model": str(judge_dir), "batch_size": 1, "question": "Is the response good ?"}
    )
    model = LlamaForCausalLM.from_pretrained(judge_dir).eval()
    expected = [hand_judge(model, batched, p, r) for p, r in zip(PROMPTS, RESPONSES)]
    got = batched.score(PROMPTS, RESPONSES)
    assert all(0 <= g <= 1 for g in got)
    assert got == pytest.approx(expected, abs=1e-6)
    assert single.score(PROMPTS, RESPONSES) == pytest.approx(expected, abs=1e-6)
    assert len({round(g, 6) for g in got}) > 1  # the judge does look at the response


def test_llm_judge_prompt_uses_chat_template_with_generation_prompt(judge_dir):
    model, tok = LlamaForCausalLM.from_pretrained(judge_dir), make_tokenizer()
    scorer = scorers.LLMJudgeScorer(model, tok, question="Is it good ?")
    ids = scorer.encode("hello", "fine")
    assert tok.convert_ids_to_tokens(ids[-3:]) == ["<s>", "assistant", ":"]
    assert tok.convert_ids_to_tokens(ids[:3]) == ["<s>", "user", ":"]
    assert scorer.yes_ids == [tok.convert_tokens_to_ids("Yes")] and scorer.no_ids == [tok.convert_tokens_to_ids("No")]


def test_llm_judge_bad_configuration(judge_dir):
    model, tok = LlamaForCausalLM.from_pretrained(judge_dir), make_tokenizer()
    with pytest.raises(ConfigError, match="template"):
        scorers.LLMJudgeScorer(model, tok, template="{question} {answer}")
    with pytest.raises(ConfigError, match="cannot tell"):
        scorers.LLMJudgeScorer(model, tok, yes="Sure", no="Nope")  # both map to [UNK]
    with pytest.raises(ConfigError, match="batch_size"):
        scorers.LLMJudgeScorer(model, tok, batch_size=0)
