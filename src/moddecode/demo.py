"""The embedded default: the bundled SmolLM2 with its f-DPO adapters (one per objective), side by side.

`prompted=True` uses three system prompts on the plain model instead of the adapters.
"""

from __future__ import annotations

from dataclasses import dataclass

DEMO_OBJECTIVES = {
    "concise": "You answer in one short sentence. Never more than fifteen words.",
    "detailed": "You give thorough, detailed explanations with several concrete examples and steps.",
    "humorous": "You are a playful comedian. Answer with jokes, puns and silly exaggerations.",
}
DEMO_PROMPTS = ["Why is the sky blue?", "How do I make a cup of tea?"]
ADAPTER_DESCRIPTIONS = {
    "concise": "f-DPO (reverse KL) towards shorter answers (conciseness scorer)",
    "positive": "f-DPO (reverse KL) towards positive sentiment (VADER)",
    "readable": "f-DPO (reverse KL) towards easy reading (Flesch reading ease)",
}
DEMO_WEIGHTINGS = [
    (1.0, 0.0, 0.0),
    (0.5, 0.5, 0.0),
    (0.0, 1.0, 0.0),
    (0.0, 0.5, 0.5),
    (0.0, 0.0, 1.0),
]


# what the demo prints beside each response, so the steering is visible: {label: scorer}
DEMO_MEASURES = {"words": "length", "VADER": "vader", "Flesch": "readability"}


@dataclass(frozen=True)
class DemoRow:
    prompt: str
    weights: tuple[float, ...]
    response: str
    scores: dict[str, float]  # DEMO_MEASURES of the response


def demo_objectives(prompted: bool = False) -> dict[str, str]:
    return DEMO_OBJECTIVES if prompted else ADAPTER_DESCRIPTIONS


def load_demo_policies(source: str = "smollm2", prompted: bool = False):
    from .adapters import DEMO_ADAPTERS, bundled_adapter
    from .policy import Policy

    if prompted:
        return [Policy.load(source, system_prompt=text, name=name) for name, text in DEMO_OBJECTIVES.items()]
    return [Policy.load(source, adapter=bundled_adapter(name), name=name) for name in DEMO_ADAPTERS]


def run_demo(prompts=None, weightings=None, *, max_new_tokens: int = 160, divergence: str = "reverse_kl",
             source: str = "smollm2", prompted: bool = False) -> tuple[list[str], list[DemoRow]]:
    """Decode every prompt at every weighting in ONE batched call (a weight vector per row), and score each."""
    from .eval.scorers import get_scorer
    from .mod import MOD

    prompts = list(prompts or DEMO_PROMPTS)
    weightings = [tuple(w) for w in (weightings or DEMO_WEIGHTINGS)]
    policies = load_demo_policies(source, prompted)
    mod = MOD(policies, divergence=divergence)
    rows = [(p, w) for p in prompts for w in weightings]
    texts = mod.generate([p for p, _ in rows], [list(w) for _, w in rows], max_new_tokens=max_new_tokens)
    asked = [p for p, _ in rows]
    scores = {label: get_scorer(spec).score(asked, texts) for label, spec in DEMO_MEASURES.items()}
    return mod.names, [DemoRow(p, w, t, {label: float(s[i]) for label, s in scores.items()})
                       for i, ((p, w), t) in enumerate(zip(rows, texts))]
