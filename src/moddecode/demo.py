"""The embedded default: the bundled SmolLM2 under contrasting prompted objectives, side by side."""

from __future__ import annotations

from dataclasses import dataclass

DEMO_OBJECTIVES = {
    "concise": "You answer in one short sentence. Never more than fifteen words.",
    "detailed": "You give thorough, detailed explanations with several concrete examples and steps.",
    "humorous": "You are a playful comedian. Answer with jokes, puns and silly exaggerations.",
}
DEMO_PROMPTS = ["Why is the sky blue?", "How do I make a cup of tea?"]
DEMO_WEIGHTINGS = [
    (1.0, 0.0, 0.0),
    (0.5, 0.5, 0.0),
    (0.0, 1.0, 0.0),
    (0.0, 0.5, 0.5),
    (0.0, 0.0, 1.0),
]


@dataclass(frozen=True)
class DemoRow:
    prompt: str
    weights: tuple[float, ...]
    response: str


def load_demo_policies(source: str = "smollm2"):
    from .policy import Policy

    return [Policy.load(source, system_prompt=text, name=name) for name, text in DEMO_OBJECTIVES.items()]


def run_demo(prompts=None, weightings=None, *, max_new_tokens: int = 48, divergence: str = "reverse_kl",
             source: str = "smollm2") -> tuple[list[str], list[DemoRow]]:
    """Decode every prompt at every weighting in ONE batched call (a weight vector per row)."""
    from .mod import MOD

    prompts = list(prompts or DEMO_PROMPTS)
    weightings = [tuple(w) for w in (weightings or DEMO_WEIGHTINGS)]
    policies = load_demo_policies(source)
    mod = MOD(policies, divergence=divergence)
    rows = [(p, w) for p in prompts for w in weightings]
    texts = mod.generate([p for p, _ in rows], [list(w) for _, w in rows], max_new_tokens=max_new_tokens)
    return mod.names, [DemoRow(p, w, t) for (p, w), t in zip(rows, texts)]
