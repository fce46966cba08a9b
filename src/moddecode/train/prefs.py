"""Preference data from the reference policy: sample K responses per prompt, score, pair best vs worst.

Optionally, each objective has a style: a system prompt that steers the reference policy towards it
("answer in one sentence"). Each prompt is then also answered once per style, and an objective's pairs
are drawn from the plain responses and its own style's response, so the adapter learns to behave as the
styled model does without the system prompt (the chosen response must have ended at EOS).

`make_prefs` appends every sampled batch to `samples.jsonl` as soon as it is scored, so an interrupted
run resumes after the last finished batch (each batch has its own seed, so results do not depend on
where a run was interrupted). Pair files (one per objective) are rebuilt from the samples at the end.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import ConfigError
from ..prompts import PromptItem
from ..prompts import read_prompt_file as read_prompts  # JSONL {"id"?, "prompt"}, CSV or one prompt per line


def build_pairs(prompt: PromptItem, responses: Sequence[str], scores: Sequence[float], *, objective: str,
                pairs_per_prompt: int = 1, margin: float = 0.0, complete: Sequence[bool] | None = None) -> list[dict]:
    """Chosen/rejected pairs for one prompt: the k-th best against the k-th worst response.

    Only a complete response (`complete[i]`, one that ended at EOS; all by default) can be chosen. A pair
    is kept only if the chosen score beats the rejected one by more than `margin` and the texts differ.
    Scores are kept in the records.
    """
    if len(responses) != len(scores):
        raise ConfigError(f"{len(responses)} responses but {len(scores)} scores for prompt {prompt.id}")
    complete = [True] * len(responses) if complete is None else list(complete)
    best_first = sorted(range(len(responses)), key=lambda i: (-scores[i], i))
    choosable = [i for i in best_first if complete[i]]
    pairs, used = [], set()
    for k in range(min(pairs_per_prompt, len(choosable))):
        best = choosable[k]
        worst = next((i for i in reversed(best_first) if i not in used and i != best), None)
        if worst is None or best in used or scores[best] <= scores[worst]:
            break
        used.update((best, worst))
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
               margin: float | Mapping[str, float] = 0.0, styles: Mapping[str, str] | None = None,
               system_prompt: str | None = None, limit: int | None = None, engine: str = "transformers",
               engine_options: Mapping | None = None, progress: bool = True) -> dict[str, Path]:
    """Sample `k` responses per prompt from `source` (plus one per style), score them, write pairs.

    engine, engine_options: as for `MOD` (the same seeded samples on either engine; "vllm" is for GPUs: on a
    2-core CPU the transformers engine was faster).
    styles: {objective: system prompt}; margin: one number, or {objective: number, "*": the rest's} (scorers
    differ in scale).
    limit: use only the first `limit` prompts. It is not part of the run's identity: batches do not depend on it,
    so a larger limit later extends the same run.
    Returns {objective name: pair file}. Files: out_dir/samples.jsonl (every response with every
    score, its style and whether it ended at EOS), out_dir/<objective>.jsonl (pairs), out_dir/manifest.json.
    """
    from tqdm.auto import tqdm

    from ..eval.scorers import get_scorer
    from ..mod import MOD
    from ..policy import Policy

    styles = dict(styles or {})
    min_plain = 1 if styles else 2
    if k < min_plain:
        raise ConfigError(f"k must be at least {min_plain} to form pairs{' with styles' if styles else ''}, got {k}")
    scorers = [get_scorer(spec) for spec in scorer_specs]
    if not scorers:
        raise ConfigError("give at least one scorer (one per objective), e.g. conciseness")
    names = [s.name for s in scorers]
    if len(set(names)) != len(names):
        raise ConfigError(f"scorer names must differ (they name the objectives): {names}")
    _check_named(styles, names, "style")
    margins = _margins(margin, names)
    prompts = read_prompts(prompts_path)
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"limit must be a positive number of prompts, got {limit}")
        prompts = prompts[:limit]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"source": source, "prompts": str(prompts_path), "k": k, "seed": seed, "max_new_tokens": max_new_tokens,
                "temperature": temperature, "top_p": top_p, "prompts_per_batch": prompts_per_batch,
                "system_prompt": system_prompt, "objectives": names, "styles": styles, "engine": engine}
    manifest = out / "manifest.json"
    if manifest.exists():
        previous = json.loads(manifest.read_text())
        if previous != settings:
            raise ConfigError(f"{out} holds samples made with other settings; use a new folder or delete it")
    manifest.write_text(json.dumps(settings, indent=2))
    samples_path = out / "samples.jsonl"
    variants = [None] * k + list(styles)  # per prompt: k plain answers, then one per style
    batches = list(_batches(prompts, prompts_per_batch))
    done = _finished_batches(samples_path, {index: Counter(item.id for item in batch for _ in variants)
                                            for index, batch in batches})
    mod = MOD([Policy.load(source, system_prompt=system_prompt)], engine=engine, engine_options=engine_options)
    with samples_path.open("a") as sink, tqdm(total=len(prompts) * len(variants), unit="resp", desc="sampling",
                                              disable=not progress) as bar:
        for index, batch in batches:
            if index in done:
                bar.update(len(batch) * len(variants))
                continue
            rows = [(item, style) for item in batch for style in variants]
            requests = [item.prompt if style is None else
                        [{"role": "system", "content": styles[style]}, {"role": "user", "content": item.prompt}]
                        for item, style in rows]
            results = mod.generations(requests, [1.0], strategy="sample", seed=seed + index, temperature=temperature,
                                      top_p=top_p, max_new_tokens=max_new_tokens)
            texts = [r.text for r in results]
            scores = {s.name: s.score([item.prompt for item, _ in rows], texts) for s in scorers}
            records = [{"batch": index, "prompt_id": item.id, "prompt": item.prompt, "style": style, "response": r.text,
                        "complete": r.finish_reason == "stop", "scores": {n: float(scores[n][i]) for n in names}}
                       for i, ((item, style), r) in enumerate(zip(rows, results))]
            sink.write("".join(json.dumps(r) + "\n" for r in records))
            sink.flush()
            bar.update(len(rows))
    return write_pair_files(out, prompts, names, pairs_per_prompt=pairs_per_prompt, margin=margins)


def _check_named(mapping: Mapping, objectives: list[str], what: str) -> None:
    unknown = sorted(set(mapping) - set(objectives))
    if unknown:
        raise ConfigError(f"{what} given for {unknown}, which no scorer names; objectives are {objectives}")


def _margins(margin: float | Mapping[str, float], objectives: list[str]) -> dict[str, float]:
    if isinstance(margin, Mapping):  # "*" sets the margin of the objectives not named
        _check_named({o: v for o, v in margin.items() if o != "*"}, objectives, "margin")
        return {o: float(margin.get(o, margin.get("*", 0.0))) for o in objectives}
    return {o: float(margin) for o in objectives}


def _finished_batches(samples_path: Path, wanted: Mapping[int, Counter]) -> set[int]:
    """The batches already in samples.jsonl; `wanted` is {index: Counter of its rows' prompt ids}.

    A batch of `wanted` with rows missing is dropped and redone whole: one cut short by a crash, or the last
    batch of a run with a lower --limit (a batch's samples depend on all its prompts, so it is sampled again
    as a run with this limit from the start would have sampled it).
    """
    if not samples_path.exists():
        return set()
    rows = []
    for line in samples_path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    present: dict[int, Counter] = {}
    for row in rows:
        present.setdefault(row["batch"], Counter())[row["prompt_id"]] += 1
    # rows beyond `wanted` (a batch sampled whole under a higher --limit) are kept: lowering a limit loses nothing
    short = {index for index, ids in present.items() if index in wanted and wanted[index] - ids}
    samples_path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["batch"] not in short))
    return set(present) - short


def write_pair_files(out: Path, prompts: list[PromptItem], objectives: list[str], *, pairs_per_prompt: int,
                     margin: float | Mapping[str, float]) -> dict[str, Path]:
    """One pair file per objective from samples.jsonl: its plain responses and its own style's response."""
    margins = _margins(margin, objectives)
    by_prompt: dict[str, list[dict]] = {}
    for line in (out / "samples.jsonl").read_text().splitlines():
        row = json.loads(line)
        by_prompt.setdefault(row["prompt_id"], []).append(row)
    files = {}
    for objective in objectives:
        path = out / f"{objective}.jsonl"
        pairs = []
        for item in prompts:
            rows = [r for r in by_prompt.get(item.id, []) if r.get("style") in (None, objective)]
            pairs += build_pairs(item, [r["response"] for r in rows], [r["scores"][objective] for r in rows],
                                 objective=objective, pairs_per_prompt=pairs_per_prompt, margin=margins[objective],
                                 complete=[r.get("complete", True) for r in rows])
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(p) + "\n" for p in pairs))
        tmp.replace(path)
        files[objective] = path
    return files
