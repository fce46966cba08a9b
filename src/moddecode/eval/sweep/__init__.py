"""Evaluation sweeps: a YAML config -> jobs (prompt x method x weighting) -> rows in a resumable store.

Config schema (unknown keys are errors, with "did you mean"; relative paths are resolved against the
YAML file's folder):

    name: concise-vs-enthusiastic   # run name; default: the file's stem
    policies: [...]                  # as in a policy set: {name, source, adapter?, system_prompt?}
    reference: {source: smollm2}     # optional pi_ref (needed by jsd, or weights not summing to 1)
    divergence: reverse_kl           # or `divergences: [reverse_kl, forward_kl]`: one MOD method each
    device: cpu                      # optional; dtype: float32 | bfloat16 | float16
    decoding: {strategy: greedy, max_new_tokens: 48}   # any DecodingConfig field but divergence (above)
    prompts: data/prompts.jsonl      # JSONL/CSV; or {path, id_field: id, text_field: prompt, limit};
                                     # or {dataset: NAME, split, config, id_field, text_field, limit}
                                     # (Hugging Face, online); or an inline list of strings / {id, prompt}
    scorers:                         # one per policy, same order: scorer i measures policy i's objective
      - {type: conciseness, target_words: 20}
      - {type: vader, name: positivity}
    extra_scorers: [{type: fluency}] # optional: scored beside the objectives, shown in every table, never weighted
    grid: {type: two_objective, n: 11}   # or simplex / explicit / negative (see eval.grids),
                                         # a list of weightings, or a list of such specs (their union)
    methods: [mod, rs, single]       # default: all three
    rs: {merge: exact}               # Rewarded Soups LoRA merge: exact | factor_average
    batch_size: 32                   # rows per generate call (rows of one call decode together; a prompt's
                                     # weightings in one call share its forwards until their tokens part,
                                     # so a multiple of the grid's size is fastest)
    report: {reference_point: [0, -1], examples: 3}   # hypervolume reference; example prompts shown

Methods: "MOD" (or "MOD:<divergence>" with several divergences) decodes every weighting; "RS" merges
the policies' parameters per weighting (only when they differ in parameters: LoRA adapters of one
base, or full models of one architecture; otherwise it is skipped with the reason); "single:<name>"
is each policy alone, stored at its one-hot weighting.

The config hash covers what decides a row's content (policies, reference, divergences, decoding,
scorers, RS merge, the prompt set, and the contents of the local model, .gguf, adapter and scorer-model
files they name), not the grid, the method list or the batch size: growing the grid or adding a method
reuses every finished row; changing the prompts, or overwriting an adapter in place, starts a new row
set. With `strategy: sample`, each generate call (batch) is seeded with `seed`, so sampled rows depend
on how rows were batched.

Modules, each importing only those above it:

    layout.py    the run folder `report` reads: run.json, results.sqlite, sweep.yaml; method names
    prompts.py   the `prompts:` section (files via moddecode.prompts, datasets, inline lists)
    config.py    parsing and validation -> SweepConfig
    plan.py      Job (one row) and Batch (one generate call)
    backends.py  where batches run: this process or Ray actors (Worker decodes and scores)
    run.py       run_sweep: plan, skip what is stored, run the rest, commit batch by batch
"""

from .backends import BACKENDS, LocalBackend, RayBackend, Worker, make_backend
from .config import SweepConfig, load_sweep_config, parse_sweep_config, parse_sweep_decoding
from .layout import CONFIG_COPY, RUN_FILE, SINGLE_PREFIX, STORE_FILE, read_run_file, write_run_file
from .plan import Batch, Job, make_batches, plan_jobs
from .run import SweepSummary, run_sweep

__all__ = ["BACKENDS", "LocalBackend", "RayBackend", "Worker", "make_backend", "SweepConfig", "load_sweep_config",
           "parse_sweep_config", "parse_sweep_decoding", "CONFIG_COPY", "RUN_FILE", "SINGLE_PREFIX", "STORE_FILE",
           "read_run_file", "write_run_file", "Batch", "Job", "make_batches", "plan_jobs", "SweepSummary", "run_sweep"]
