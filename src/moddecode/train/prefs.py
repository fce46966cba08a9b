"""Preference data from the reference policy: sample K responses per prompt, score, pair best vs worst.

`make_prefs` appends every sampled batch to `samples.jsonl` as soon as it is scored, so an interrupted
run resumes after the last finished batch (each batch has its own seed, so results do not depend on
where a run was interrupted). Pair files (one per objective) are rebuilt from the samples at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError
from ..prompts import PromptItem
from ..prompts import read_prompt_file as read_prompts  # JSONL {"id"?, "prompt"}, CSV or one prompt per line


def build_pairs(prompt: PromptItem, responses: Sequence[str], scores: Sequence[float], *, objective: str,
                pairs_per_prompt: int = 1, margin: float = 0.0) -> list[dict]:
    """Chosen/rejected pairs for one prompt: the k-th best against the k-th worst response.

    A pair is kept only if the chosen score beats the rejected one by more than `margin` and the two
    texts differ. Scores are kept in the records.
    """
    if len(responses) != len(scores):
        raise ConfigError(f"{len(responses)} responses but {len(scores)} scores for prompt {prompt.id}")
    order = sorted(range(len(responses)), key=lambda i: (-scores[i], i))
    pairs = []
    for k in range(pairs_per_prompt):
        best, worst = order[k], order[len(order) - 1 - k]
        if k >= len(order) - 1 - k:
            break
        if scores[best] - scores[worst] <= margin or responses[best].strip() == responses[worst].strip():
            continue
        pairs.append({"prompt_id": prompt.id, "prompt": prompt.prompt, "chosen": responses[best],
                      "rejected": responses[worst], "chosen_score": scores[best], "rejected_score": scores[worst],
                      "objective": objective})
    return pairs


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield start // size, items[start:start + size]


def make_prefs(source: str, prompts_path: str | Path, scorer_specs: Sequence, out_dir: str | Path, *,
               k: int = 4, seed: int = 0, max_new_tokens: int = 64, temperature: float = 1.0,
               top_p: float | None = 0.95, prompts_per_batch: int = 8, pairs_per_prompt: int = 1,
               margin: float = 0.0, system_prompt: str | None = None, progress: bool = True) -> dict[str, Path]:
    """Sample `k` responses per prompt from `source`, score them with each scorer, write pairs.

    Returns {objective name: pair file}. Files: out_dir/samples.jsonl (every response with every
    score) and out_dir/<objective>.jsonl (pairs), out_dir/manifest.json (the settings).
    """
    from tqdm.auto import tqdm

    from ..eval.scorers import get_scorer
    from ..mod import MOD
    from ..policy import Policy

    if k < 2:
        raise ConfigError(f"k must be at least 2 to form pairs, got {k}")
    scorers = [get_scorer(spec) for spec in scorer_specs]
    if not scorers:
        raise ConfigError("give at least one scorer (one per objective), e.g. conciseness")
    names = [s.name for s in scorers]
    if len(set(names)) != len(names):
        raise ConfigError(f"scorer names must differ (they name the objectives): {names}")
    prompts = read_prompts(prompts_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"source": source, "prompts": str(prompts_path), "k": k, "seed": seed, "max_new_tokens": max_new_tokens,
                "temperature": temperature, "top_p": top_p, "prompts_per_batch": prompts_per_batch,
                "system_prompt": system_prompt, "objectives": names}
    manifest = out / "manifest.json"
    if manifest.exists():
        previous = json.loads(manifest.read_text())
        if previous != settings:
            raise ConfigError(f"{out} holds samples made with other settings; use a new folder or delete it")
    manifest.write_text(json.dumps(settings, indent=2))
    samples_path = out / "samples.jsonl"
    done = set()
    if samples_path.exists():
        lines = samples_path.read_text().splitlines()
        complete = []
        for line in lines:  # a line cut by a crash is dropped and its batch redone
            try:
                complete.append(json.loads(line))
            except json.JSONDecodeError:
                break
        samples_path.write_text("".join(json.dumps(r) + "\n" for r in complete))
        done = {r["batch"] for r in complete}
    policy = Policy.load(source, system_prompt=system_prompt)
    mod = MOD([policy])
    batches = list(_batches(prompts, prompts_per_batch))
    with samples_path.open("a") as sink, tqdm(total=len(prompts) * k, unit="resp", desc="sampling",
                                              disable=not progress) as bar:
        for index, batch in batches:
            if index in done:
                bar.update(len(batch) * k)
                continue
            rows = [item for item in batch for _ in range(k)]
            texts = mod.generate([r.prompt for r in rows], [1.0], strategy="sample", seed=seed + index,
                                 temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
            scores = {s.name: s.score([r.prompt for r in rows], texts) for s in scorers}
            records = [{"batch": index, "prompt_id": r.id, "prompt": r.prompt, "response": t,
                        "scores": {n: float(scores[n][i]) for n in names}} for i, (r, t) in enumerate(zip(rows, texts))]
            sink.write("".join(json.dumps(r) + "\n" for r in records))
            sink.flush()
            bar.update(len(rows))
    return write_pair_files(out, prompts, names, pairs_per_prompt=pairs_per_prompt, margin=margin)


def write_pair_files(out: Path, prompts: list[PromptItem], objectives: list[str], *, pairs_per_prompt: int,
                     margin: float) -> dict[str, Path]:
    by_prompt: dict[str, list[dict]] = {}
    for line in (out / "samples.jsonl").read_text().splitlines():
        row = json.loads(line)
        by_prompt.setdefault(row["prompt_id"], []).append(row)
    files = {}
    for objective in objectives:
        path = out / f"{objective}.jsonl"
        pairs = []
        for item in prompts:
            rows = by_prompt.get(item.id, [])
            pairs += build_pairs(item, [r["response"] for r in rows], [r["scores"][objective] for r in rows],
                                 objective=objective, pairs_per_prompt=pairs_per_prompt, margin=margin)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(p) + "\n" for p in pairs))
        tmp.replace(path)
        files[objective] = path
    return files
