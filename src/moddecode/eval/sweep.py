"""Evaluation sweeps: a YAML config -> jobs (prompt x method x weighting) -> rows in a resumable store.

Config schema (unknown keys are errors, with "did you mean"; relative paths are resolved against the
YAML file's folder):

    name: concise-vs-enthusiastic   # run name; default: the file's stem
    policies: [...]                  # as in a policy set: {name, source, adapter?, system_prompt?}
    reference: {source: smollm2}     # optional pi_ref (needed by jsd, or weights not summing to 1)
    divergence: reverse_kl           # or `divergences: [reverse_kl, forward_kl]`: one MOD method each
    device: cpu                      # optional; dtype: float32 | bfloat16 | float16
    decoding: {strategy: greedy, max_new_tokens: 48}   # any MOD.generate option but weights
    prompts: data/prompts.jsonl      # JSONL/CSV; or {path, id_field: id, text_field: prompt, limit};
                                     # or {dataset: NAME, split, config, id_field, text_field, limit}
                                     # (Hugging Face, online); or an inline list of strings / {id, prompt}
    scorers:                         # one per policy, same order: scorer i measures policy i's objective
      - {type: conciseness, target_words: 20}
      - {type: vader, name: positivity}
    grid: {type: two_objective, n: 11}   # or simplex / explicit / negative (see eval.grids),
                                         # a list of weightings, or a list of such specs (their union)
    methods: [mod, rs, single]       # default: all three
    rs: {merge: exact}               # Rewarded Soups LoRA merge: exact | factor_average
    batch_size: 32                   # rows per generate call (rows of one call decode together)
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
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..config import REFERENCE_KEYS, _policy_specs, _reference_spec, check_keys, read_yaml_mapping
from ..decoding import DecodingConfig
from ..divergences import get_divergence
from ..errors import ConfigError, UnknownNameError
from .grids import parse_grid
from .local_files import check_policy_set_paths, fingerprints, referenced_paths
from .prompts import load_prompts
from .scorers import check_scorer_spec
from .store import ResultStore, result_key, weights_key

TOP_LEVEL_KEYS = ["name", "policies", "reference", "divergence", "divergences", "device", "dtype", "decoding",
                  "prompts", "scorers", "grid", "methods", "rs", "batch_size", "report"]
DECODING_KEYS = ["strategy", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "num_beams", "scope", "stop"]
METHOD_KINDS = ["mod", "rs", "single"]
RS_MERGES = ["exact", "factor_average"]
REPORT_KEYS = ["reference_point", "examples"]
SINGLE_PREFIX = "single:"
RUN_FILE, STORE_FILE, CONFIG_COPY = "run.json", "results.sqlite", "sweep.yaml"


@dataclass(frozen=True)
class Job:
    """One row to produce: `prompt_id` answered by `method` at `weights` (one weight per policy)."""

    method: str
    prompt_id: str
    weights: tuple[float, ...]


@dataclass(frozen=True)
class Batch:
    """Jobs decoded by one generate call: same method (and, for RS, same weighting = same merged model)."""

    method: str
    jobs: tuple[Job, ...]


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep. Plain data, so it pickles to Ray actors."""

    name: str
    policy_set: dict  # what `load_policy_set` takes: policies, reference, device, dtype (paths resolved)
    divergences: tuple[str, ...]
    decoding: dict
    prompts: tuple[tuple[str, str], ...]  # (id, text)
    prompts_source: str
    scorers: tuple[dict, ...]  # get_scorer specs, one per policy
    objectives: tuple[str, ...]
    weightings: tuple[tuple[float, ...], ...]
    methods: tuple[str, ...]  # kinds: mod / rs / single
    rs_merge: str = "exact"
    rs_skip_reason: str | None = None  # why RS cannot run for these policies (None: it can)
    batch_size: int = 32
    report: dict = field(default_factory=dict)
    hash_basis: dict = field(default_factory=dict)  # policies, reference and dtype as written in the config

    @property
    def policy_names(self) -> list[str]:
        return [p["name"] for p in self.policy_set["policies"]]

    def mod_methods(self) -> list[tuple[str, str]]:
        """(method name, divergence) for each MOD variant."""
        if "mod" not in self.methods:
            return []
        if len(self.divergences) == 1:
            return [("MOD", self.divergences[0])]
        return [(f"MOD:{d}", d) for d in self.divergences]

    def method_names(self) -> list[str]:
        """Every method this sweep produces rows for, in report order."""
        names = [m for m, _ in self.mod_methods()]
        if "rs" in self.methods and self.rs_skip_reason is None:
            names.append("RS")
        if "single" in self.methods:
            names += [SINGLE_PREFIX + n for n in self.policy_names]
        return names

    def one_hot(self, index: int) -> tuple[float, ...]:
        return tuple(1.0 if i == index else 0.0 for i in range(len(self.policy_names)))

    def config_hash_payload(self) -> dict:
        """What decides a row's content (see the module docstring); stored next to the rows."""
        digest = hashlib.sha256(json.dumps(self.prompts, ensure_ascii=False).encode()).hexdigest()[:16]
        return {**self.hash_basis, "divergences": list(self.divergences), "decoding": self.decoding,
                "scorers": list(self.scorers), "objectives": list(self.objectives), "rs_merge": self.rs_merge,
                "prompts_sha256": digest,
                "files_sha256": fingerprints(referenced_paths(self.policy_set, self.scorers))}


# --- parsing -------------------------------------------------------------------------------------


def load_sweep_config(source: str | Path | Mapping) -> SweepConfig:
    """Read and validate a sweep config from a YAML file or a mapping (paths then relative to the cwd)."""
    if isinstance(source, Mapping):
        return parse_sweep_config(dict(source), Path.cwd(), "sweep")
    path = Path(source).expanduser()
    raw = read_yaml_mapping(
        path, missing=f"sweep config not found: {path}; pass a YAML file such as examples/sweep.yaml",
        not_mapping=f"{path} must hold a mapping with `policies`, `prompts`, `scorers` and `grid`")
    return parse_sweep_config(raw, path.parent.resolve(), path.stem)


def parse_sweep_config(raw: dict, base_dir: Path, default_name: str) -> SweepConfig:
    """Validate every section up front, so a bad config fails before any model loads."""
    check_keys("sweep config", raw, TOP_LEVEL_KEYS)
    for key in ("policies", "prompts", "scorers", "grid"):
        if key not in raw:
            raise ConfigError(f"sweep config needs `{key}` (see `moddecode sweep --help` for the schema)")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise ConfigError(f"`name` must be a non-empty string without '/', got {name!r}")
    specs = _policy_specs(raw["policies"], base_dir)
    reference = _reference_spec(raw.get("reference"), base_dir)
    policy_set = {"policies": [_spec_dict(s) for s in specs],
                  **({"reference": {k: v for k, v in _spec_dict(reference).items() if k in REFERENCE_KEYS}}
                     if reference else {}),
                  **{k: raw[k] for k in ("device", "dtype") if raw.get(k) is not None}}
    divergences = _divergences(raw)
    weightings = _grid(raw["grid"], len(specs))
    _check_reference_needs(divergences, weightings, reference is not None)
    scorers, objectives = _scorers(raw["scorers"], len(specs))
    methods = _methods(raw.get("methods", METHOD_KINDS))
    rs_merge = _rs_merge(raw.get("rs") or {})
    prompts, prompts_source = load_prompts(raw["prompts"], base_dir)
    hash_basis = {"policies": raw["policies"], "reference": raw.get("reference"), "dtype": raw.get("dtype")}
    return SweepConfig(
        name=name.strip(), policy_set=policy_set, divergences=divergences,
        decoding=_decoding(raw.get("decoding") or {}), prompts=prompts, prompts_source=prompts_source,
        scorers=scorers, objectives=objectives, weightings=weightings, methods=methods, rs_merge=rs_merge,
        rs_skip_reason=rs_skip_reason(specs), batch_size=_positive_int(raw.get("batch_size", 32), "batch_size"),
        report=_report(raw.get("report") or {}, len(specs)), hash_basis=hash_basis,
    )


def _spec_dict(spec) -> dict:
    return {k: v for k, v in asdict(spec).items() if v is not None}


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"`{what}` must be a positive integer, got {value!r}")
    return value


def _divergences(raw: dict) -> tuple[str, ...]:
    if "divergence" in raw and "divergences" in raw:
        raise ConfigError("give either `divergence` (one) or `divergences` (a list), not both")
    value = raw.get("divergences", [raw.get("divergence", "reverse_kl")])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"`divergences` must be a non-empty list like [reverse_kl, forward_kl], got {value!r}")
    names = [get_divergence(v).name for v in value]
    if len(set(names)) != len(names):
        raise ConfigError(f"`divergences` lists a divergence twice: {names}")
    return tuple(names)


def _grid(spec, num_policies: int) -> tuple[tuple[float, ...], ...]:
    """One weighting per grid point, duplicates dropped; a list of grid specs gives their union."""
    specs = spec if isinstance(spec, list) and spec and all(isinstance(s, Mapping) for s in spec) else [spec]
    out: dict[str, tuple[float, ...]] = {}
    for s in specs:
        if isinstance(s, Mapping) and s.get("type") in ("simplex", "negative") and "m" not in s:
            s = {**s, "m": num_policies}  # default to the number of policies, not grids' 2
        try:
            points = parse_grid(s)
        except ConfigError as exc:
            raise ConfigError(f"grid: {exc}") from None
        for w in points:
            if len(w) != num_policies:
                raise ConfigError(f"grid weighting {list(w)} has {len(w)} weights but there are {num_policies} "
                                  f"policies; give one weight per policy (in the order of `policies`)")
            out.setdefault(weights_key(w), w)
    return tuple(out.values())


def _check_reference_needs(divergences, weightings, has_reference: bool) -> None:
    if has_reference:
        return
    for name in divergences:
        div = get_divergence(name)
        bad = [list(w) for w in weightings if div.needs_reference(math.fsum(w))]
        if bad:
            raise ConfigError(f"divergence {name!r} with weighting {bad[0]} (sum {math.fsum(bad[0]):g}) needs a "
                              "reference policy: add `reference: {source: ...}` or use weightings summing to 1")


def _scorers(entries, num_policies: int) -> tuple[tuple[dict, ...], tuple[str, ...]]:
    if not isinstance(entries, list) or not entries:
        raise ConfigError("`scorers` must be a list with one scorer per policy, e.g. [{type: vader}, {type: length}]")
    if len(entries) != num_policies:
        raise ConfigError(f"`scorers` has {len(entries)} entries but there are {num_policies} policies; give one "
                          "scorer per policy, in the same order (scorer i measures policy i's objective)")
    specs = []
    for i, entry in enumerate(entries):
        spec = {"type": entry} if isinstance(entry, str) else dict(entry) if isinstance(entry, Mapping) else None
        if spec is None or not isinstance(spec.get("type"), str):
            raise ConfigError(f"scorers[{i}] must be a name or a mapping with `type`, got {entry!r}")
        check_scorer_spec(spec)  # type, option names, model paths: no model loads
        specs.append(spec)
    objectives = [str(s.get("name", s["type"])) for s in specs]
    if len(set(objectives)) != len(objectives):
        raise ConfigError(f"scorer names must be distinct (they name the objectives), got {objectives}; "
                          "give repeated types a `name`, e.g. {type: vader, name: positivity}")
    return tuple(specs), tuple(objectives)


def _methods(value) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ConfigError(f"`methods` must be a non-empty list drawn from {METHOD_KINDS}, got {value!r}")
    out = []
    for m in items:
        key = str(m).strip().lower()
        if key not in METHOD_KINDS:
            raise UnknownNameError("method", str(m), METHOD_KINDS)
        if key not in out:
            out.append(key)
    return tuple(out)


def _rs_merge(entry) -> str:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"`rs` must be a mapping like {{merge: exact}}, got {entry!r}")
    check_keys("rs", entry, ["merge"])
    merge = entry.get("merge", "exact")
    if merge not in RS_MERGES:
        raise UnknownNameError("RS merge method", str(merge), RS_MERGES)
    return merge


def _decoding(entry) -> dict:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"`decoding` must be a mapping like {{max_new_tokens: 48}}, got {entry!r}")
    check_keys("decoding", entry, DECODING_KEYS)
    decoding = dict(entry)
    if isinstance(decoding.get("stop"), str):
        decoding["stop"] = [decoding["stop"]]
    DecodingConfig(**{**decoding, "stop": tuple(decoding.get("stop") or ())})  # raises naming the bad value
    return decoding


def _report(entry, num_policies: int) -> dict:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"`report` must be a mapping, got {entry!r}")
    check_keys("report", entry, REPORT_KEYS)
    ref = entry.get("reference_point")
    if ref is not None and (not isinstance(ref, list) or len(ref) != num_policies
                            or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in ref)):
        raise ConfigError(f"report.reference_point must be {num_policies} finite numbers (one per objective, "
                          f"worse than every score), got {ref!r}")
    examples = entry.get("examples", 2)
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 0:
        raise ConfigError(f"report.examples must be an integer >= 0, got {examples!r}")
    return {"reference_point": ref, "examples": examples}


# --- Rewarded Soups applicability ----------------------------------------------------------------

_ARCH_KEYS = ("model_type", "architectures", "vocab_size", "hidden_size", "intermediate_size",
              "num_hidden_layers", "num_attention_heads", "num_key_value_heads")


def rs_skip_reason(specs) -> str | None:
    """Why parameter merging is meaningless for these policies, or None when RS can run."""
    prompts = {s.system_prompt for s in specs}
    if len(prompts) > 1:
        return ("RS skipped: the policies differ in their system prompts, and parameter merging cannot merge "
                "prompts; with shared parameters a soup would just be the base model again. RS needs LoRA "
                "adapters of one base model or full fine-tuned models of one architecture")
    adapters = [s.adapter for s in specs]
    if all(adapters):
        if len({s.source for s in specs}) > 1:
            return "RS skipped: the LoRA adapters sit on different base models; RS merges adapters of one base"
        return None
    if any(adapters):
        return "RS skipped: some policies have a LoRA adapter and some do not; give every policy an adapter"
    if len({s.source for s in specs}) < len(specs):
        return "RS skipped: two policies load the same model with no adapter, so their parameters are identical"
    configs = [_local_config(s.source) for s in specs]
    if all(c is not None for c in configs):
        for key in _ARCH_KEYS:
            values = [c.get(key) for c in configs]
            if any(v != values[0] for v in values[1:]):
                return (f"RS skipped: the full models differ in architecture ({key}: {values}); "
                        "RS needs one architecture")
    return None


def _local_config(source: str) -> dict | None:
    path = Path(source) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else None


# --- planning ------------------------------------------------------------------------------------


def plan_jobs(config: SweepConfig) -> list[Job]:
    """Every row of the sweep, prompt-major within each method (rows of one prompt have equal lengths)."""
    jobs = []
    ids = [pid for pid, _ in config.prompts]
    for method, _ in config.mod_methods():
        jobs += [Job(method, pid, w) for pid in ids for w in config.weightings]
    if "RS" in config.method_names():
        jobs += [Job("RS", pid, w) for w in config.weightings for pid in ids]
    if "single" in config.methods:
        for i, name in enumerate(config.policy_names):
            jobs += [Job(SINGLE_PREFIX + name, pid, config.one_hot(i)) for pid in ids]
    return jobs


def make_batches(jobs: list[Job], batch_size: int) -> list[Batch]:
    """Consecutive jobs of one method (and for RS one weighting) in chunks of at most batch_size."""
    batches: list[Batch] = []
    current: list[Job] = []

    def group(job: Job):
        return (job.method, job.weights if job.method == "RS" else None)

    for job in jobs:
        if current and (group(job) != group(current[0]) or len(current) == batch_size):
            batches.append(Batch(current[0].method, tuple(current)))
            current = []
        current.append(job)
    if current:
        batches.append(Batch(current[0].method, tuple(current)))
    return batches


# --- running -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSummary:
    run_dir: Path
    config_hash: str
    total: int  # rows in the plan
    already_done: int  # finished before this call
    added: int  # rows this call wrote
    seconds: float
    skipped: dict[str, str]  # method -> reason


def run_sweep(config: SweepConfig, run_dir: str | Path, *, backend: str = "local", workers: int = 1,
              ray_address: str | None = None, progress: bool = True, config_text: str | None = None,
              log=print) -> SweepSummary:
    """Produce every missing row of `config` into RUN_DIR/results.sqlite; rerun to resume after a kill.

    Each batch is generated, scored and committed in one transaction, so a kill loses at most the
    batches in flight, and a rerun skips every committed row (nothing is recomputed or duplicated).
    """
    from .backends import make_backend

    start = time.time()
    runner = make_backend(backend, config, workers=workers, address=ray_address)  # fails early, e.g. no Ray
    # before anything is written or loaded: the files must be there, and their contents go into the hash
    check_policy_set_paths(config.policy_set)
    payload = config.config_hash_payload()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    skipped = {"RS": config.rs_skip_reason} if "rs" in config.methods and config.rs_skip_reason else {}
    for method, reason in skipped.items():
        log(reason)
    if config_text is not None:
        (run_dir / CONFIG_COPY).write_text(config_text)
    with ResultStore(run_dir / STORE_FILE) as store:
        chash = store.put_config(payload)
        previous = _read_run_file(run_dir)
        if previous and previous.get("config_hash") != chash:
            log(f"the config or the model files it names changed since the last sweep in {run_dir} (hash {previous.get('config_hash')} -> "
                f"{chash}); its rows stay in the store, and this run starts its own row set")
        _write_run_file(run_dir, config, chash, skipped, seconds=None)
        plan = plan_jobs(config)
        done = store.done_keys(chash)
        todo = [j for j in plan if result_key(j.prompt_id, j.method, j.weights) not in done]
        already = len(plan) - len(todo)
        added = 0
        if todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(plan), initial=already, unit="row", desc=f"sweep {config.name}",
                       disable=not progress, dynamic_ncols=True, smoothing=0.1)
            try:
                for rows in runner.run(make_batches(todo, config.batch_size)):
                    added += store.add_many({**r, "config_hash": chash} for r in rows)
                    bar.update(len(rows))
            finally:
                bar.close()
        seconds = time.time() - start
        _write_run_file(run_dir, config, chash, skipped, seconds=seconds)
    return SweepSummary(run_dir, chash, len(plan), already, added, seconds, skipped)


def _read_run_file(run_dir: Path) -> dict | None:
    path = run_dir / RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _write_run_file(run_dir: Path, config: SweepConfig, chash: str, skipped: dict, seconds: float | None) -> None:
    """run.json: what `moddecode report` needs to find and label this run's rows."""
    info: dict[str, Any] = {
        "name": config.name, "config_hash": chash, "store": STORE_FILE, "objectives": list(config.objectives),
        "policies": config.policy_set["policies"], "divergences": list(config.divergences),
        "methods": config.method_names(), "skipped": skipped, "weightings": [list(w) for w in config.weightings],
        "prompts": [{"id": i, "prompt": t} for i, t in config.prompts], "prompts_source": config.prompts_source,
        "decoding": config.decoding, "scorers": list(config.scorers), "rs_merge": config.rs_merge,
        "report": config.report, "last_sweep_seconds": seconds,
    }
    tmp = run_dir / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False))
    tmp.replace(run_dir / RUN_FILE)  # atomic: a kill never leaves a half-written run.json
