"""The paper's H.1 experiment: flip the sign of Q and K in the last two layers of one aligned model.

Negating both W_q and W_k leaves every attention score q.k (and so the logits) unchanged, so MOD,
which only sees the policies' outputs, decodes exactly as before. Rewarded Soups averages parameters:
w * W + (1 - w) * (-W') no longer means anything, and its outputs change (degrade).

Full models: the bundled base with the 'concise' and 'positive' adapters merged in (the adapted models
the paper merges). Prints, per weighting, whether MOD's outputs are unchanged and how RS's outputs, scores
and fluency (the `fluency` scorer: mean token log-prob
of each response under the plain base model, averaged over prompts) move, and writes the table as JSON.

    .venv/bin/python scripts/h1_flip_experiment.py [--prompts 8] [-n 32] [--prompts-file data/prompts/heldout.jsonl]
        [--json docs/reproduction/h1.json] [--resume runs/h1.jsonl] [--device cuda]

With --resume FILE each finished part (MOD on 10 prompts, RS at one weighting) is appended to FILE and a
rerun skips it; FILE starts over when the adapters, prompts or token limit differ.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from moddecode import MOD
from moddecode.adapters import bundled_adapter
from moddecode.baselines.rewarded_soups import merge_full_models
from moddecode.eval.grids import two_objective_grid
from moddecode.eval.local_files import fingerprints
from moddecode.eval.scorers import FluencyScorer, get_scorer
from moddecode.policy import (LoadedModel, Policy, default_device, describe_device, load_tokenizer,
                             resolve_source)
from moddecode.train.prefs import read_prompts


CHUNK = 10  # prompts per MOD call: 10 x 11 rows, which bounds the KV cache


def adapted_full_model(folder: str, adapter: Path, device: torch.device):
    """The base model with a LoRA adapter merged into its weights (a plain transformers model)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload().to(device).eval()


def flip_qk(model, layers: int = 2):
    """A copy with W_q and W_k negated in the last `layers` decoder layers (same logits, other weights)."""
    flipped = copy.deepcopy(model)
    with torch.no_grad():
        for layer in flipped.model.layers[-layers:]:
            layer.self_attn.q_proj.weight.neg_()
            layer.self_attn.k_proj.weight.neg_()
    return flipped


def policy_of(model, tokenizer, name: str) -> Policy:
    return Policy(LoadedModel(key=f"{name}|{model.device}|float32", model=model, tokenizer=tokenizer),
                  adapter_name=None, system_prompt=None, name=name)


class Parts:
    """Finished parts of the decode by name, appended to a JSONL file (None: kept in memory only)."""

    def __init__(self, path: str | None, header: dict):
        self.path, self.done = (Path(path) if path else None), {}
        if self.path is None:
            return
        lines = self.path.read_text().splitlines() if self.path.is_file() else []
        if lines and json.loads(lines[0]) == {"header": header}:
            for line in lines[1:]:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill: that part is redone
                    continue
                self.done[record["part"]] = record["texts"]
            print(f"resuming: {len(self.done)} parts done in {self.path}")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"header": header}) + "\n")

    def get(self, name: str, make) -> list[str]:
        if name not in self.done:
            self.done[name] = make()
            if self.path is not None:
                with self.path.open("a") as f:
                    f.write(json.dumps({"part": name, "texts": self.done[name]}) + "\n")
        return self.done[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("-n", "--max-new-tokens", type=int, default=32)
    parser.add_argument("--json", dest="json_out", default=None)
    parser.add_argument("--prompts-file", default="data/prompts/heldout.jsonl",
                        help="held-out prompts; the last --prompts of them are decoded")
    parser.add_argument("--resume", default=None, help="a JSONL file of finished parts, so a rerun resumes")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = parser.parse_args()
    device = default_device(args.device)
    folder, _ = resolve_source("smollm2")
    tokenizer = load_tokenizer(folder)
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
    concise = adapted_full_model(folder, bundled_adapter("concise"), device)
    positive = adapted_full_model(folder, bundled_adapter("positive"), device)
    positive_flipped = flip_qk(positive)
    prompts = [p.prompt for p in read_prompts(args.prompts_file)[-args.prompts:]]
    ids = torch.tensor([policy_of(positive, tokenizer, "p").encode(prompts[0])], device=device)
    with torch.no_grad():
        logit_gap = float((positive(input_ids=ids).logits - positive_flipped(input_ids=ids).logits).abs().max())
    weight_gap = float((positive.model.layers[-1].self_attn.q_proj.weight
                        - positive_flipped.model.layers[-1].self_attn.q_proj.weight).abs().max())
    print(f"max |logit difference| original vs flipped: {logit_gap:.2e}; max |W_q difference|: {weight_gap:.3f}")

    scorers = {"concise": get_scorer("conciseness"), "positive": get_scorer("vader")}
    fluent = FluencyScorer(policy_of(base, tokenizer, "plain"))  # mean token log-prob under the plain model
    grid = two_objective_grid(11)
    header = {"adapters": fingerprints({n: str(bundled_adapter(n)) for n in ("concise", "positive")}),
              "prompts": prompts, "max_new_tokens": args.max_new_tokens}
    parts = Parts(args.resume, header)
    texts = {}
    for label, second in (("original", positive), ("flipped", positive_flipped)):
        mod = MOD([policy_of(concise, tokenizer, "concise"), policy_of(second, tokenizer, label)])
        by_row = {}
        for start in range(0, len(prompts), CHUNK):  # a chunk's weightings of one prompt share its forwards
            chunk = [(p, w) for p in prompts[start:start + CHUNK] for w in grid]
            decoded = parts.get(f"MOD {label} prompts from {start}", lambda chunk=chunk: mod.generate(
                [p for p, _ in chunk], [list(w) for _, w in chunk], max_new_tokens=args.max_new_tokens))
            by_row.update(zip(chunk, decoded))
        texts[("MOD", label)] = [by_row[(p, w)] for w in grid for p in prompts]
        rs_texts = []
        for w in grid:
            def soup(w=w, second=second):
                merged = merge_full_models([concise, second], list(w))
                return MOD([policy_of(merged, tokenizer, "rs")]).generate(prompts, [1.0],
                                                                         max_new_tokens=args.max_new_tokens)
            rs_texts += parts.get(f"RS {label} {list(w)}", soup)
        texts[("RS", label)] = rs_texts

    def mean_scores(method, label, w_index):
        chunk = texts[(method, label)][w_index * len(prompts):(w_index + 1) * len(prompts)]
        return {o: sum(s.score(prompts, chunk)) / len(prompts) for o, s in scorers.items()}, chunk

    table = []
    print(f"{'weights':<12}{'MOD same':>9}{'RS same':>9}   RS concise orig->flip   RS positive orig->flip"
          "   RS fluency orig->flip")
    for i, w in enumerate(grid):
        mod_o, mod_o_t = mean_scores("MOD", "original", i)
        mod_f, mod_f_t = mean_scores("MOD", "flipped", i)
        rs_o, rs_o_t = mean_scores("RS", "original", i)
        rs_f, rs_f_t = mean_scores("RS", "flipped", i)
        same_mod = sum(a == b for a, b in zip(mod_o_t, mod_f_t))
        same_rs = sum(a == b for a, b in zip(rs_o_t, rs_f_t))
        flu_o, flu_f = (sum(fluent.score(prompts, chunk)) / len(prompts) for chunk in (rs_o_t, rs_f_t))
        table.append({"weights": list(w), "mod_identical": same_mod, "rs_identical": same_rs,
                      "n": len(prompts), "mod": {"original": mod_o, "flipped": mod_f},
                      "rs": {"original": rs_o, "flipped": rs_f},
                      "rs_fluency": {"original": flu_o, "flipped": flu_f},
                      "rs_example": {"original": rs_o_t[0], "flipped": rs_f_t[0]}})
        print(f"{str(tuple(w)):<12}{same_mod:>6}/{len(prompts)}{same_rs:>6}/{len(prompts)}"
              f"   {rs_o['concise']:.3f} -> {rs_f['concise']:.3f}        {rs_o['positive']:+.3f} -> {rs_f['positive']:+.3f}"
              f"        {flu_o:.3f} -> {flu_f:.3f}")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({"logit_gap": logit_gap, "q_weight_gap": weight_gap,
                                                   "ran_on": describe_device(device),
                                                   "prompts": prompts, "rows": table}, indent=2))


if __name__ == "__main__":
    main()
