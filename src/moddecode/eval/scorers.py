"""Scorers: map (prompt, response) pairs to one float per pair. Larger means "more of the objective".

A scorer is anything with a `name` and `score(prompts, responses) -> list[float]` (the `Scorer`
protocol). Scorers are looked up by name in one registry; `get_scorer` accepts a name, a dict
{"type": <name>, "name": <objective name, optional>, **options}, or a ready scorer.

Built-ins:
    vader        VADER compound sentiment of the response, in [-1, 1].
    readability  Flesch reading ease of the response (textstat), offline (see ReadabilityScorer).
    length       number of whitespace-separated words of the response.
    conciseness  target_words / (target_words + words): 1 for an empty response, 1/2 at the target,
                 decreasing towards 0 (a bounded "shorter is better").
    hf_reward    a sequence-classification reward model's logit for (prompt, response).
    llm_judge    p(Yes) / (p(Yes) + p(No)) of a chat model asked a yes/no question about the response.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import ConfigError, ModelLoadError, UnknownNameError


@runtime_checkable
class Scorer(Protocol):
    """name: the objective's name; score: one float per (prompt, response) pair, same order."""

    name: str

    def score(self, prompts: list[str], responses: list[str]) -> list[float]: ...


def check_pairs(prompts: Sequence[str], responses: Sequence[str], who: str) -> tuple[list[str], list[str]]:
    """Validate a batch: two equally long lists of strings."""
    for label, seq in (("prompts", prompts), ("responses", responses)):
        if isinstance(seq, str) or not isinstance(seq, Sequence):
            raise ConfigError(f"{who}: {label} must be a list of strings, got {type(seq).__name__}")
        bad = [i for i, s in enumerate(seq) if not isinstance(s, str)]
        if bad:
            raise ConfigError(f"{who}: {label}[{bad[0]}] is {type(seq[bad[0]]).__name__}, not str")
    if len(prompts) != len(responses):
        raise ConfigError(
            f"{who}: got {len(prompts)} prompts but {len(responses)} responses; pass one prompt per response"
        )
    return list(prompts), list(responses)


class CallableScorer:
    """Wrap a plain function (prompts, responses) -> floats as a Scorer, checking what it returns."""

    def __init__(self, name: str, fn: Callable[[list[str], list[str]], Sequence[float]]):
        if not callable(fn):
            raise ConfigError(f"scorer {name!r}: expected a callable (prompts, responses) -> floats, got {fn!r}")
        self.name = name
        self.fn = fn

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        prompts, responses = check_pairs(prompts, responses, self.name)
        out = self.fn(prompts, responses)
        try:
            values = [float(v) for v in out]
        except (TypeError, ValueError):
            raise ConfigError(f"scorer {self.name!r} must return numbers, got {out!r}") from None
        if len(values) != len(responses):
            raise ConfigError(f"scorer {self.name!r} returned {len(values)} scores for {len(responses)} responses")
        return values


# --- lexicon / text-statistics scorers -------------------------------------------------------


def _missing_package(package: str, scorer: str) -> ModelLoadError:
    return ModelLoadError(
        f"scorer {scorer!r} needs the package {package!r}, which is not installed; run: pip install 'moddecode[eval]'"
    )


class VaderScorer:
    """VADER compound sentiment of each response (the prompt is ignored), in [-1, 1]."""

    def __init__(self, name: str = "vader"):
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError:
            raise _missing_package("vaderSentiment", "vader") from None
        self.name = name
        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        _, responses = check_pairs(prompts, responses, self.name)
        return [float(self._analyzer.polarity_scores(r)["compound"]) for r in responses]


def _cmudict_is_local() -> bool:
    """Whether NLTK's CMU pronouncing dictionary is already on disk (no download needed)."""
    try:
        import nltk
    except ImportError:
        return False
    try:
        nltk.data.find("corpora/cmudict")
    except LookupError:
        return False
    return True


def _no_cmudict(lang: str):
    return None


@contextlib.contextmanager
def _downloads_blocked():
    """Make nltk.download fail at once instead of reaching for the network (it may hang offline)."""
    nltk = sys.modules.get("nltk")
    if nltk is None or not hasattr(nltk, "download"):
        yield
        return

    def refuse(*args, **kwargs):
        raise ModelLoadError(
            "the readability scorer tried to download NLTK data; install it once with "
            "`python -m nltk.downloader cmudict` (or copy nltk_data) - no network is used while scoring"
        )

    original = nltk.download
    nltk.download = refuse
    try:
        yield
    finally:
        nltk.download = original


class ReadabilityScorer:
    """Flesch reading ease of each response (textstat), higher = easier; the prompt is ignored.

    Offline by construction. Recent textstat (0.7.13 here) counts syllables with NLTK's cmudict and calls
    nltk.download('cmudict') when it is missing. If cmudict is not already on disk we point textstat's
    cmudict lookup at None, which makes it use its own Pyphen hyphenation fallback for every word, and
    nltk.download is blocked while scoring. With cmudict installed, textstat runs unmodified.
    `syllable_source` says which one is in use ("cmudict" or "pyphen").
    """

    def __init__(self, name: str = "readability", lang: str = "en_US"):
        try:
            import textstat
        except ImportError:
            raise _missing_package("textstat", "readability") from None
        self.name = name
        self.syllable_source = "cmudict" if _cmudict_is_local() else "pyphen"
        if self.syllable_source == "pyphen":
            # Every textstat module that imported get_cmudict gets the offline stub.
            for mod_name, mod in list(sys.modules.items()):
                if mod_name.startswith("textstat") and callable(getattr(mod, "get_cmudict", None)):
                    mod.get_cmudict = _no_cmudict
        stats_cls = getattr(getattr(textstat, "textstat", None), "textstatistics", None)
        self._stats = stats_cls() if stats_cls is not None else textstat
        try:
            self._stats.set_lang(lang)
        except Exception as e:  # pyphen raises KeyError for an unknown language
            raise ConfigError(f"readability: unsupported language {lang!r} ({e}); use e.g. 'en_US'") from None

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        _, responses = check_pairs(prompts, responses, self.name)
        try:
            with _downloads_blocked():
                return [float(self._stats.flesch_reading_ease(r)) for r in responses]
        except LookupError as e:
            raise ModelLoadError(f"readability: textstat needs data that is not installed ({e})") from None


class LengthScorer:
    """Number of whitespace-separated words of each response (the prompt is ignored)."""

    def __init__(self, name: str = "length"):
        self.name = name

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        _, responses = check_pairs(prompts, responses, self.name)
        return [float(len(r.split())) for r in responses]


class ConcisenessScorer:
    """target_words / (target_words + words) = 1 / (1 + words / target_words), in (0, 1].

    1 for an empty response, 0.5 at exactly `target_words` words, strictly decreasing in length.
    """

    def __init__(self, name: str = "conciseness", target_words: float = 50.0):
        if isinstance(target_words, bool) or not isinstance(target_words, (int, float)) or not target_words > 0:
            raise ConfigError(f"conciseness: target_words must be a positive number, got {target_words!r}")
        self.name = name
        self.target_words = float(target_words)

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        _, responses = check_pairs(prompts, responses, self.name)
        return [self.target_words / (self.target_words + len(r.split())) for r in responses]


# --- model-based scorers -----------------------------------------------------------------------


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


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


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
        self.batch_size = _positive_int(batch_size, "hf_reward: batch_size")
        self.max_length = None if max_length is None else _positive_int(max_length, "hf_reward: max_length")
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
        self.batch_size = _positive_int(batch_size, "llm_judge: batch_size")
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


# --- registry ----------------------------------------------------------------------------------

_REGISTRY: dict[str, tuple[str, Any]] = {}  # name -> ("factory" | "instance", object)


def register_scorer(name: str, obj: Any, *, factory: bool | None = None, overwrite: bool = False) -> None:
    """Register a scorer under `name`.

    obj may be: a class or factory function building a Scorer from keyword options (factory=True;
    classes are detected automatically), a ready Scorer instance, or a plain function
    (prompts, responses) -> floats (wrapped in CallableScorer).
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"scorer name must be a non-empty string, got {name!r}")
    if name in _REGISTRY and not overwrite:
        raise ConfigError(f"a scorer named {name!r} is already registered; pass overwrite=True to replace it")
    if factory is None:
        factory = inspect.isclass(obj)
    if factory:
        if not callable(obj):
            raise ConfigError(f"scorer factory for {name!r} must be callable, got {obj!r}")
        _REGISTRY[name] = ("factory", obj)
    elif isinstance(obj, Scorer):
        _REGISTRY[name] = ("instance", obj)
    elif callable(obj):
        _REGISTRY[name] = ("instance", CallableScorer(name, obj))
    else:
        raise ConfigError(
            f"cannot register {obj!r} as scorer {name!r}: pass a Scorer, a class, or a function (prompts, responses) -> floats"
        )


def available_scorers() -> list[str]:
    """Registered scorer names, sorted."""
    return sorted(_REGISTRY)


def _split_spec(spec: str | Mapping) -> tuple[str, dict]:
    """(registered type, options) of a name or {"type": name, **options}; raises on an unknown type."""
    if isinstance(spec, str):
        kind, options = spec, {}
    elif isinstance(spec, Mapping):
        if "type" not in spec:
            raise ConfigError(f"scorer spec {dict(spec)!r} has no 'type'; e.g. {{'type': 'vader'}}")
        options = {k: v for k, v in spec.items() if k != "type"}
        kind = spec["type"]
    else:
        raise ConfigError(f"a scorer spec is a name, a dict with 'type', or a Scorer; got {type(spec).__name__}")
    if kind not in _REGISTRY:
        raise UnknownNameError("scorer", str(kind), available_scorers())
    return kind, options


def check_scorer_spec(spec: str | Mapping | Scorer) -> None:
    """Raise ConfigError for what `get_scorer(spec)` would reject by its shape, without building it.

    Cheap (no model loads): the type, the option names (unknown ones, required ones missing), and a
    factory's own `check_options(**options)` if it has one (e.g. a reward model folder that is missing).
    """
    if not isinstance(spec, (str, Mapping)) and isinstance(spec, Scorer):
        return
    kind, options = _split_spec(spec)
    how, obj = _REGISTRY[kind]
    if how == "instance":
        rename = options.pop("name", None)
        if options:
            raise ConfigError(f"scorer {kind!r} is a registered instance and takes no options; got {sorted(options)}")
        if rename is not None and rename != obj.name:
            raise ConfigError(f"scorer {kind!r} is a registered instance named {obj.name!r}; it cannot be renamed")
        return
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):  # no introspectable signature: the factory itself will judge
        return
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    accepted = [p.name for p in params if p.kind in named]
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        unknown = sorted(str(k) for k in options if k not in accepted)
        if unknown:
            raise ConfigError(f"scorer {kind!r} does not take {'option' if len(unknown) == 1 else 'options'} "
                              f"{unknown}; it accepts {accepted}")
    missing = [p.name for p in params if p.kind in named and p.default is p.empty and p.name not in options]
    if missing:
        raise ConfigError(f"scorer {kind!r} needs {missing}, e.g. {{type: {kind}, {missing[0]}: ...}}")
    check = getattr(obj, "check_options", None)
    if callable(check):
        check(**options)


def get_scorer(spec: str | Mapping | Scorer) -> Scorer:
    """Resolve a scorer from a name, a dict {"type": name, "name": objective, **options}, or a Scorer."""
    if not isinstance(spec, (str, Mapping)) and isinstance(spec, Scorer):
        return spec
    check_scorer_spec(spec)
    kind, options = _split_spec(spec)
    how, obj = _REGISTRY[kind]
    if how == "instance":
        return obj
    scorer = obj(**options)
    if not isinstance(scorer, Scorer):
        raise ConfigError(f"factory for scorer {kind!r} returned {scorer!r}, which has no name/score")
    return scorer


for _name, _cls in {
    "vader": VaderScorer,
    "readability": ReadabilityScorer,
    "length": LengthScorer,
    "conciseness": ConcisenessScorer,
    "hf_reward": HFRewardScorer,
    "llm_judge": LLMJudgeScorer,
}.items():
    register_scorer(_name, _cls)
del _name, _cls
