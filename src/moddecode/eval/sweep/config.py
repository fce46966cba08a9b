"""A sweep config: YAML (or a mapping) -> a validated `SweepConfig` (the schema is in eval.sweep's docstring).

Every section is checked here, so a bad config fails before anything is written or any model loads.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

from ...baselines import rs_skip_reason
from ...checks import positive_int
from ...config import REFERENCE_KEYS, _policy_specs, _reference_spec, check_keys, read_yaml_mapping
from ...decoding import DecodingConfig
from ...divergences import get_divergence
from ...errors import ConfigError, MissingReferenceError, UnknownNameError
from ...weights import Weighting
from ..grids import parse_grid
from ..local_files import fingerprints, referenced_paths
from ..scorers import check_scorer_spec
from ..store import weights_key
from .layout import SINGLE_PREFIX
from .prompts import load_prompts

TOP_LEVEL_KEYS = ["name", "policies", "reference", "divergence", "divergences", "device", "dtype", "decoding",
                  "prompts", "scorers", "extra_scorers", "grid", "methods", "rs", "batch_size", "report"]
METHOD_KINDS = ["mod", "rs", "single"]
RS_MERGES = ["exact", "factor_average"]
REPORT_KEYS = ["reference_point", "examples", "claims"]
# which of the paper's claims a run tests (eval.report.claims judges them): the MOD-vs-RS frontier (Fig. 1-3,
# Table 4), the same with three objectives, with another f-divergence (JSD / alpha), and negative weights (Table 1)
CLAIM_KINDS = ["frontier", "three_objectives", "divergence", "negative_weights"]


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep. Plain data, so it pickles to Ray actors."""

    name: str
    policy_set: dict  # what `load_policy_set` takes: policies, reference, device, dtype (paths resolved)
    divergences: tuple[str, ...]
    decoding: dict  # the `decoding:` section as written (stop as a list): hashed and shown in run.json
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
    extra_scorers: tuple[dict, ...] = ()  # get_scorer specs scored beside the objectives (e.g. fluency), never weighted
    columns: tuple[str, ...] = ()  # their names

    @property
    def all_scorers(self) -> tuple[dict, ...]:
        """Objective scorers (in policy order), then the extra columns."""
        return self.scorers + self.extra_scorers

    @property
    def score_names(self) -> tuple[str, ...]:
        return self.objectives + self.columns

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

    @property
    def decoding_config(self) -> DecodingConfig:
        """The decoding options as a DecodingConfig (no divergence: each MOD method passes its own)."""
        return parse_sweep_decoding(self.decoding)

    def one_hot(self, index: int) -> tuple[float, ...]:
        return tuple(1.0 if i == index else 0.0 for i in range(len(self.policy_names)))

    def config_hash_payload(self) -> dict:
        """What decides a row's content (see eval.sweep's docstring); stored next to the rows."""
        digest = hashlib.sha256(json.dumps(self.prompts, ensure_ascii=False).encode()).hexdigest()[:16]
        return {**self.hash_basis, "divergences": list(self.divergences), "decoding": self.decoding,
                "scorers": list(self.scorers), "objectives": list(self.objectives), "rs_merge": self.rs_merge,
                "prompts_sha256": digest,
                "files_sha256": fingerprints(referenced_paths(self.policy_set, self.all_scorers)),
                **({"extra_scorers": list(self.extra_scorers)} if self.extra_scorers else {})}


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
    _check_reference_needs(divergences, weightings, len(specs), reference is not None)
    scorers, objectives = _scorers(raw["scorers"], len(specs))
    extra_scorers, columns = _extra_scorers(raw.get("extra_scorers") or [], objectives)
    methods = _methods(raw.get("methods", METHOD_KINDS))
    rs_merge = _rs_merge(raw.get("rs") or {})
    prompts, prompts_source = load_prompts(raw["prompts"], base_dir)
    hash_basis = {"policies": raw["policies"], "reference": raw.get("reference"), "dtype": raw.get("dtype")}
    return SweepConfig(
        name=name.strip(), policy_set=policy_set, divergences=divergences,
        decoding=_decoding(raw.get("decoding") or {}), prompts=prompts, prompts_source=prompts_source,
        scorers=scorers, objectives=objectives, weightings=weightings, methods=methods, rs_merge=rs_merge,
        rs_skip_reason=rs_skip_reason(specs), batch_size=positive_int(raw.get("batch_size", 32), "`batch_size`"),
        report=_report(raw.get("report") or {}, len(specs)), hash_basis=hash_basis,
        extra_scorers=extra_scorers, columns=columns,
    )


def _spec_dict(spec) -> dict:
    return {k: v for k, v in asdict(spec).items() if v is not None}


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


def _check_reference_needs(divergences, weightings, num_policies: int, has_reference: bool) -> None:
    """Each divergence must be able to decode every weighting (weights.py decides when pi_ref is needed)."""
    for name in divergences:
        try:
            Weighting.build([list(w) for w in weightings], num_policies=num_policies,
                            num_prompts=len(weightings), divergence=get_divergence(name),
                            has_reference=has_reference, remedy="add `reference: {source: ...}` to the sweep config")
        except MissingReferenceError:
            raise
        except ConfigError as exc:  # e.g. a weight beyond the bound every decode enforces
            raise ConfigError(f"grid: {exc}") from None


def _scorers(entries, num_policies: int) -> tuple[tuple[dict, ...], tuple[str, ...]]:
    if not isinstance(entries, list) or not entries:
        raise ConfigError("`scorers` must be a list with one scorer per policy, e.g. [{type: vader}, {type: length}]")
    if len(entries) != num_policies:
        raise ConfigError(f"`scorers` has {len(entries)} entries but there are {num_policies} policies; give one "
                          "scorer per policy, in the same order (scorer i measures policy i's objective)")
    return _scorer_specs(entries, "scorers", ())


def _extra_scorers(entries, objectives: tuple[str, ...]) -> tuple[tuple[dict, ...], tuple[str, ...]]:
    if not isinstance(entries, list):
        raise ConfigError("`extra_scorers` must be a list of scorers measured beside the objectives, e.g. "
                          "[{type: fluency}]")
    return _scorer_specs(entries, "extra_scorers", objectives) if entries else ((), ())


def _scorer_specs(entries: list, key: str, taken: tuple[str, ...]) -> tuple[tuple[dict, ...], tuple[str, ...]]:
    specs = []
    for i, entry in enumerate(entries):
        spec = {"type": entry} if isinstance(entry, str) else dict(entry) if isinstance(entry, Mapping) else None
        if spec is None or not isinstance(spec.get("type"), str):
            raise ConfigError(f"{key}[{i}] must be a name or a mapping with `type`, got {entry!r}")
        check_scorer_spec(spec)  # type, option names, model paths: no model loads
        specs.append(spec)
    names = [str(s.get("name", s["type"])) for s in specs]
    if len(set(taken + tuple(names))) != len(taken) + len(names):
        raise ConfigError(f"scorer names must be distinct (they name the score columns), got {[*taken, *names]}; "
                          "give repeated types a `name`, e.g. {type: vader, name: positivity}")
    return tuple(specs), tuple(names)


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


def parse_sweep_decoding(entry) -> DecodingConfig:
    """The `decoding:` section as a DecodingConfig; errors name decoding.<field>, unknown keys get "did you mean".

    Every field but the divergence: a sweep names the divergences it compares at the top level.
    """
    if isinstance(entry, Mapping) and "divergence" in entry:
        raise ConfigError("`decoding.divergence` is not a sweep option: name the divergences to compare at the top "
                          "level, `divergences: [reverse_kl, jsd]` (or `divergence: jsd` for one)",
                          param="divergence")
    if isinstance(entry, Mapping) and "stop" in entry and entry["stop"] is None:  # `stop:` left empty
        entry = {k: v for k, v in entry.items() if k != "stop"}
    return DecodingConfig.from_mapping(entry, where="decoding")


def _decoding(entry) -> dict:
    """The section as written, with one stop string made a list (this dict is hashed: keep it stable)."""
    parse_sweep_decoding(entry)
    decoding = dict(entry)
    if isinstance(decoding.get("stop"), str):
        decoding["stop"] = [decoding["stop"]]
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
    examples = positive_int(entry.get("examples", 2), "report.examples", minimum=0)
    claims = entry.get("claims", [])
    if not isinstance(claims, list) or any(c not in CLAIM_KINDS for c in claims):
        raise ConfigError(f"report.claims must be a list drawn from {CLAIM_KINDS}, got {claims!r}")
    return {"reference_point": ref, "examples": examples, **({"claims": claims} if claims else {})}
