"""Scorers backed by a model: a reward model (`hf_reward`) and a yes/no chat judge (`llm_judge`).

Each class has `check_options(**options)`, which `check_scorer_spec` calls to reject a bad model path
before anything loads.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from ..checks import positive_int
from ..errors import ConfigError, ModelLoadError
from .scorer_base import check_pairs


def _offline() -> bool:
    return any(
        os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _check_source(source, what: str) -> None:
    """Reject, without loading anything, a model path that cannot work (a hub id or an object passes)."""
    if not isinstance(source, (str, Path)):
        return
    source = str(source)
    path = Path(source).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise ModelLoadError(f"{what} {source!r} is a file; pass the folder that holds config.json")
    looks_like_path = source.startswith((".", "/", "~", "\\")) or source.count("/") > 1 or "\\" in source
    if looks_like_path:
        raise ModelLoadError(f"{what} folder {source!r} does not exist; check the path")


def _check_model_options(what: str):
    """A scorer's `check_options`: its model (and tokenizer) paths, checked before anything loads."""

    def check(model=None, tokenizer=None, **_) -> None:
        _check_source(model, what)
        _check_source(tokenizer, f"{what} tokenizer")

    return staticmethod(check)


def _load_pretrained(loader, source: str, what: str, **kwargs):
    """loader.from_pretrained(source) for a local folder, or a hub id when online; ModelLoadError otherwise."""
    path = Path(source).expanduser()
    if path.is_dir():
        try:
            return loader.from_pretrained(str(path), **kwargs)
        except Exception as e:
            raise ModelLoadError(f"could not load the {what} from folder {str(path)!r}: {e}") from e
    _check_source(source, what)
    try:
        return loader.from_pretrained(source, local_files_only=_offline(), **kwargs)
    except Exception as e:
        raise ModelLoadError(
            f"could not load the {what} {source!r}: it is not a local folder, and as a hub id it needs network "
            f"access or a cached copy ({type(e).__name__}: {e}). Pass a local folder with config.json instead."
        ) from e


def _resolve_model(model, tokenizer, auto_model_cls, what: str, device, dtype):
    """(model, tokenizer) from objects or from a path / hub id; the model in eval mode."""
    from transformers import AutoTokenizer

    if isinstance(model, (str, Path)):
        kwargs = {} if dtype is None else {"dtype": dtype}
        loaded = _load_pretrained(auto_model_cls, str(model), what, **kwargs)
        tok = tokenizer if tokenizer is not None else _load_pretrained(AutoTokenizer, str(model), f"{what} tokenizer")
        model = loaded
    else:
        if tokenizer is None:
            raise ConfigError(f"{what}: a model object needs its tokenizer too (pass tokenizer=...)")
        tok = tokenizer
    if isinstance(tok, (str, Path)):
        tok = _load_pretrained(AutoTokenizer, str(tok), f"{what} tokenizer")
    if device is not None:
        model = model.to(device)
    model.eval()
    return model, tok


def _pad(seqs: list[list[int]], pad_id: int, side: str, device):
    """Stack token-id lists into input_ids / attention_mask [B, T], padding on `side`."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if side == "left":
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
        else:
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def _model_device(model):
    try:
        return next(model.parameters()).device
    except StopIteration:
        return "cpu"


class HFRewardScorer:
    """Reward model score: logits[label_index] of AutoModelForSequenceClassification on (prompt, response).

    The pair is rendered with the tokenizer's chat template (user = prompt, assistant = response) when it
    has one, else as "prompt\\n\\nresponse". Batches are right-padded with the model's pad token; the
    model pools the last non-pad token (transformers' convention). If the model config has no
    pad_token_id, it is set to the tokenizer's pad (or eos) token. `max_length` keeps the last
    max_length tokens of a long pair (the end of the response is what the model pools).
    """

    check_options = _check_model_options("reward model")

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        name: str = "hf_reward",
        label_index: int = 0,
        batch_size: int = 8,
        max_length: int | None = None,
        chat_template: bool | None = None,
        device: str | None = None,
        dtype: Any = None,
    ):
        from transformers import AutoModelForSequenceClassification

        self.name = name
        self.batch_size = positive_int(batch_size, "hf_reward: batch_size")
        self.max_length = None if max_length is None else positive_int(max_length, "hf_reward: max_length")
        self.model, self.tokenizer = _resolve_model(
            model, tokenizer, AutoModelForSequenceClassification, "reward model", device, dtype
        )
        num_labels = getattr(self.model.config, "num_labels", 1)
        if isinstance(label_index, bool) or not isinstance(label_index, int) or not 0 <= label_index < num_labels:
            raise ConfigError(
                f"hf_reward: label_index must be in [0, {num_labels - 1}] for this model, got {label_index!r}"
            )
        self.label_index = label_index
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if chat_template and not has_template:
            raise ConfigError(
                "hf_reward: chat_template=True but the tokenizer has no chat template; pass chat_template=False"
            )
        self.use_chat_template = has_template if chat_template is None else bool(chat_template)
        config = self.model.config
        if getattr(config, "pad_token_id", None) is None:
            pad = (
                self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
            )
            if pad is None and self.batch_size > 1:
                raise ConfigError(
                    "hf_reward: neither the model nor the tokenizer defines a pad or eos token; use batch_size=1"
                )
            config.pad_token_id = pad
        self.pad_id = config.pad_token_id if config.pad_token_id is not None else 0

    def encode(self, prompt: str, response: str) -> list[int]:
        """Token ids of one (prompt, response) pair as the model sees it."""
        if self.use_chat_template:
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = self.tokenizer(f"{prompt}\n\n{response}")["input_ids"]
        return ids[-self.max_length :] if self.max_length else ids

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        import torch

        prompts, responses = check_pairs(prompts, responses, self.name)
        seqs = [self.encode(p, r) for p, r in zip(prompts, responses)]
        device = _model_device(self.model)
        out: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(seqs), self.batch_size):
                ids, mask = _pad(seqs[start : start + self.batch_size], self.pad_id, "right", device)
                logits = self.model(input_ids=ids, attention_mask=mask).logits
                out.extend(float(v) for v in logits[:, self.label_index].float().cpu())
        return out


DEFAULT_JUDGE_TEMPLATE = "{question}\n\nPrompt:\n{prompt}\n\nResponse:\n{response}\n\nAnswer with Yes or No."


class LLMJudgeScorer:
    """p(Yes) / (p(Yes) + p(No)) of a causal chat model asked `question` about each response.

    The user message is `template` filled with {question}, {prompt}, {response}; the chat template
    adds the generation prompt (a tokenizer without a chat template gets the message followed by
    "\\nAnswer:"). From the next-token distribution, p(Yes) sums the probabilities of the distinct
    first tokens of "Yes" and " Yes" (likewise No); a token shared by both is ignored. Batches are
    left-padded with position ids counted from the first real token, so a batch scores exactly
    like one prompt at a time.
    """

    check_options = _check_model_options("judge model")

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        name: str = "llm_judge",
        question: str = "Is the response helpful and harmless?",
        template: str = DEFAULT_JUDGE_TEMPLATE,
        system_prompt: str | None = None,
        yes: str = "Yes",
        no: str = "No",
        batch_size: int = 8,
        device: str | None = None,
        dtype: Any = None,
    ):
        from transformers import AutoModelForCausalLM

        self.name = name
        self.batch_size = positive_int(batch_size, "llm_judge: batch_size")
        self.model, self.tokenizer = _resolve_model(
            model, tokenizer, AutoModelForCausalLM, "judge model", device, dtype
        )
        try:
            template.format(question="", prompt="", response="")
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(
                f"llm_judge: template may only use {{question}}, {{prompt}} and {{response}} (bad: {e}); "
                "write literal braces as {{ and }}"
            ) from None
        if "{response}" not in template:
            raise ConfigError("llm_judge: the template must contain {response}")
        self.question, self.template, self.system_prompt = question, template, system_prompt
        self.yes_ids, self.no_ids = self._answer_ids(yes, no)
        self.use_chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        tok = self.tokenizer
        # Any id works for padding (masked out), but keep it a real token of the vocabulary.
        self.pad_id = next((t for t in (tok.pad_token_id, tok.eos_token_id) if t is not None), 0)
        params = inspect.signature(self.model.forward).parameters
        # Wrappers (e.g. PeftModel) take **kwargs and forward position_ids to the model.
        self._pass_positions = "position_ids" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())

    def _answer_ids(self, yes: str, no: str) -> tuple[list[int], list[int]]:
        def first_ids(word: str) -> set[int]:
            ids = set()
            for variant in (word, " " + word):
                enc = self.tokenizer.encode(variant, add_special_tokens=False)
                if enc:
                    ids.add(int(enc[0]))
            return ids

        yes_ids, no_ids = first_ids(yes), first_ids(no)
        shared = yes_ids & no_ids
        yes_ids, no_ids = sorted(yes_ids - shared), sorted(no_ids - shared)
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if not yes_ids or not no_ids or unk in yes_ids or unk in no_ids:
            raise ConfigError(
                f"llm_judge: the tokenizer cannot tell {yes!r} from {no!r} by their first token "
                f"(yes ids {yes_ids}, no ids {no_ids}); choose other answer words with yes=..., no=..."
            )
        return yes_ids, no_ids

    def encode(self, prompt: str, response: str) -> list[int]:
        """Token ids of the judge query for one pair, ending where the answer token would go."""
        content = self.template.format(question=self.question, prompt=prompt, response=response)
        if self.use_chat_template:
            messages = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else []) + [
                {"role": "user", "content": content}
            ]
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        prefix = f"{self.system_prompt}\n\n" if self.system_prompt else ""
        return self.tokenizer(f"{prefix}{content}\nAnswer:")["input_ids"]

    def next_token_logits(self, seqs: list[list[int]]):
        """Logits [B, V] of the token after each sequence, one left-padded forward."""
        import torch

        ids, mask = _pad(seqs, self.pad_id, "left", _model_device(self.model))
        kwargs = {"input_ids": ids, "attention_mask": mask}
        if self._pass_positions:
            kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            return self.model(**kwargs).logits[:, -1, :].double()

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        import torch

        prompts, responses = check_pairs(prompts, responses, self.name)
        seqs = [self.encode(p, r) for p, r in zip(prompts, responses)]
        out: list[float] = []
        for start in range(0, len(seqs), self.batch_size):
            logits = self.next_token_logits(seqs[start : start + self.batch_size])
            # p_yes / (p_yes + p_no) = sigmoid(logsumexp(yes logits) - logsumexp(no logits)).
            margin = torch.logsumexp(logits[:, self.yes_ids], -1) - torch.logsumexp(logits[:, self.no_ids], -1)
            out.extend(float(v) for v in torch.sigmoid(margin).cpu())
        return out


class FluencyScorer:
    """Mean per-token log-probability of the response given the prompt under a causal LM (higher = more fluent).

    The prompt is encoded exactly as a policy encodes it for generation (`Policy.encode`: the chat template
    with the generation prompt), the response is its text tokenized without special tokens, and the score is
    (1 / n) sum_t log p(r_t | prompt, r_<t) over its n tokens, summed in float64. Log-probs are normalised
    over the tokenizer's vocabulary (padded lm_head rows dropped), as the decoder does. An empty response
    is scored by the end-of-turn token alone: log p(eos | prompt).

    `model`: a source `Policy.load` accepts (default the bundled 'smollm2') or a ready `Policy`;
    `adapter`: a LoRA adapter folder to score under instead of the plain model. Batches are right-padded,
    so a batch scores like one pair at a time.
    """

    @staticmethod
    def check_options(model="smollm2", adapter=None, **_) -> None:
        if adapter is not None and not Path(adapter).expanduser().is_dir():
            raise ModelLoadError(f"fluency: adapter folder {str(adapter)!r} does not exist; check the path")
        if isinstance(model, (str, Path)) and str(model) != "smollm2":
            path = Path(model).expanduser()
            if path.suffix != ".gguf":
                _check_source(model, "fluency model")
            elif not path.is_file():
                raise ModelLoadError(f"fluency: GGUF file {str(model)!r} does not exist; check the path")

    def __init__(self, model: Any = "smollm2", *, adapter: str | Path | None = None, name: str = "fluency",
                 batch_size: int = 8, device: str | None = None):
        from ..policy import Policy

        self.name = name
        self.batch_size = positive_int(batch_size, "fluency: batch_size")
        if isinstance(model, Policy):
            if adapter is not None:
                raise ConfigError("fluency: pass either a ready Policy or adapter=..., not both")
            self.policy = model
        else:
            self.check_options(model, adapter)
            self.policy = Policy.load(str(model), adapter=adapter, device=device, name=name)
        tok = self.policy.tokenizer
        self.eos_id = next((t for t in (tok.eos_token_id, tok.pad_token_id) if t is not None), None)
        self.pad_id = next((t for t in (tok.pad_token_id, tok.eos_token_id) if t is not None), 0)

    def encode(self, prompt: str, response: str) -> tuple[list[int], list[int]]:
        """(prompt ids as the policy formats them, response ids) of one pair."""
        response_ids = self.policy.tokenizer(response, add_special_tokens=False)["input_ids"]
        if not response_ids:
            if self.eos_id is None:
                raise ConfigError("fluency: the tokenizer has no eos token, so an empty response has no score")
            response_ids = [self.eos_id]
        return self.policy.encode(prompt), list(response_ids)

    def _forward_logits(self, ids, mask):
        policy = self.policy
        kwargs = {"input_ids": ids, "attention_mask": mask}
        if policy.base.has_adapters:  # a shared PeftModel: name the adapter (or none) for every row
            kwargs["adapter_names"] = [policy.peft_adapter] * ids.shape[0]
        return policy.model(**kwargs).logits[..., : policy.base.vocab_size]

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        import torch

        prompts, responses = check_pairs(prompts, responses, self.name)
        pairs = [self.encode(p, r) for p, r in zip(prompts, responses)]
        device = self.policy.base.device
        out: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(pairs), self.batch_size):
                chunk = pairs[start : start + self.batch_size]
                ids, mask = _pad([p + r for p, r in chunk], self.pad_id, "right", device)
                logprobs = torch.log_softmax(self._forward_logits(ids, mask).double(), dim=-1)
                for row, (prompt_ids, response_ids) in enumerate(chunk):
                    # position t predicts token t + 1: the response's tokens come from the positions before them
                    first = len(prompt_ids)
                    positions = torch.arange(first - 1, first - 1 + len(response_ids), device=device)
                    targets = torch.tensor(response_ids, device=device)
                    total = logprobs[row, positions, targets].sum(dtype=torch.float64)
                    out.append(float(total) / len(response_ids))
        return out
