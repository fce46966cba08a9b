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
    fluency      mean per-token log-prob of the response given the chat-formatted prompt under a model
                 (default the bundled plain SmolLM2; options model=, adapter=).

The protocol lives in `scorer_base`, the model-backed scorers in `model_scorers`; this module holds
the text scorers and the registry, and re-exports the rest.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError, ModelLoadError, UnknownNameError
from .model_scorers import DEFAULT_JUDGE_TEMPLATE, FluencyScorer, HFRewardScorer, LLMJudgeScorer
from .scorer_base import CallableScorer, Scorer, check_pairs

__all__ = ["DEFAULT_JUDGE_TEMPLATE", "CallableScorer", "ConcisenessScorer", "FluencyScorer", "HFRewardScorer",
           "LLMJudgeScorer", "LengthScorer", "ReadabilityScorer", "Scorer", "VaderScorer", "available_scorers", "check_pairs",
           "check_scorer_spec", "get_scorer", "register_scorer"]


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
    "fluency": FluencyScorer,
}.items():
    register_scorer(_name, _cls)
del _name, _cls
