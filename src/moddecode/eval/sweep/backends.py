"""Where sweep batches run: in this process ("local"), or on Ray actors ("ray").

A `Worker` loads the policies and scorers once and turns a `Batch` into scored rows (dicts without
the config hash, which the driver adds). Backends only decide where workers live; the driver alone
writes the store, so a Ray worker dying loses nothing that was committed. Ray actors build the
scorers from the config's specs: built-in scorers work; a custom one must be registered in a module
that the actors import too.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator

from ...errors import ConfigError, ModDecodeError, UnknownNameError
from .config import SweepConfig
from .layout import SINGLE_PREFIX
from .plan import Batch

BACKENDS = ["local", "ray"]
RAY_MISSING = ("--backend ray needs Ray, which is not installed: pip install 'moddecode[ray]' "
               "(or pip install 'ray[default]>=2.9'); or use --backend local")


class Worker:
    """Decodes and scores batches of one sweep; policies, scorers and the RS base load once."""

    def __init__(self, config: SweepConfig):
        from ...config import load_policy_set
        from ...mod import MOD
        from ...policy import ModelCache
        from ..scorers import get_scorer

        self.config = config
        self.prompts = dict(config.prompts)
        self.decoding = config.decoding_config  # no divergence: MOD's default (single policies, RS)
        self.cache = ModelCache()
        self.mod, _ = load_policy_set(config.policy_set, cache=self.cache)
        self.policies = self.mod.policies
        # every MOD method decodes with the one MOD above; its divergence is a per-call setting
        self.mod_configs = {name: self.decoding.merged(divergence=div) for name, div in config.mod_methods()}
        # each policy alone: only its own forward pass runs
        self.singles = {SINGLE_PREFIX + policy.name: MOD([policy]) for policy in self.policies}
        self.scorers = [get_scorer(spec) for spec in config.all_scorers]
        self._rs: tuple[tuple[float, ...], MOD] | None = None  # the last merged model (batches are per weighting)
        self._rs_base = None

    def run(self, batch: Batch) -> list[dict]:
        """Generate and score one batch; one row dict per job."""
        jobs = batch.jobs
        prompts = [self.prompts[j.prompt_id] for j in jobs]
        if batch.method == "RS":
            decoder, weights, decoding = self._rs_decoder(jobs[0].weights), [1.0], self.decoding
        elif batch.method.startswith(SINGLE_PREFIX):
            decoder, weights, decoding = self.singles[batch.method], [1.0], self.decoding
        else:  # MOD: one weight vector per row, so many weightings decode in the same forward passes
            decoder, weights, decoding = self.mod, [list(j.weights) for j in jobs], self.mod_configs[batch.method]
        texts = decoder.generate(prompts, weights, decoding)
        columns = [scorer.score(prompts, texts) for scorer in self.scorers]
        return [
            {"prompt_id": j.prompt_id, "method": j.method, "weights": j.weights, "response": text,
             "scores": {obj: float(col[k]) for obj, col in zip(self.config.score_names, columns)}}
            for k, (j, text) in enumerate(zip(jobs, texts))
        ]

    def _rs_decoder(self, weights: tuple[float, ...]):
        """Rewarded Soups at `weights`: theta = sum_i w_i theta_i, decoded as a single policy."""
        from ...baselines.rewarded_soups import merge_full_models, merge_lora_adapters
        from ...mod import MOD
        from ...policy import LoadedModel, Policy

        if self._rs is not None and self._rs[0] == weights:
            return self._rs[1]
        self._rs = None  # free the previous soup before building the next
        specs = self.config.policy_set["policies"]
        first = self.policies[0]
        if all(s.get("adapter") for s in specs):
            merged = merge_lora_adapters(copy.deepcopy(self._pristine_base()), [s["adapter"] for s in specs],
                                         list(weights), method=self.config.rs_merge, merge=True)
        else:
            merged = merge_full_models([p.model for p in self.policies], list(weights))
        merged.to(first.base.device).eval()
        base = LoadedModel(key=f"RS|{list(weights)}", model=merged, tokenizer=first.tokenizer)
        policy = Policy(base, adapter_name=None, system_prompt=first.system_prompt, name="RS")
        self._rs = (weights, MOD([policy]))
        return self._rs[1]

    def _pristine_base(self):
        """The LoRA base model without adapters (loaded once; each soup merges into a deep copy)."""
        if self._rs_base is None:
            from transformers import AutoModelForCausalLM

            from ...policy import resolve_source

            first = self.policies[0]
            folder, _ = resolve_source(self.config.policy_set["policies"][0]["source"])
            dtype = next(first.model.parameters()).dtype
            self._rs_base = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
        return self._rs_base


class LocalBackend:
    """All batches in this process, one after the other."""

    def __init__(self, config: SweepConfig):
        self.config = config

    def run(self, batches: Iterable[Batch]) -> Iterator[list[dict]]:
        worker = None
        for batch in batches:
            worker = worker or Worker(self.config)  # load models only when there is work
            yield worker.run(batch)


class RayBackend:
    """Batches spread over Ray actors that each load the policies once; results stream back to the driver.

    With no running Ray instance and no address, a local one is started (num_cpus = workers) and shut
    down afterwards; an instance the caller started (ray.init) is used as it is.
    """

    def __init__(self, config: SweepConfig, workers: int = 2, address: str | None = None, in_flight: int = 2):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"--workers must be a positive integer, got {workers!r}")
        self.config, self.workers, self.address, self.in_flight = config, workers, address, in_flight
        self.ray = _import_ray()

    def run(self, batches: Iterable[Batch]) -> Iterator[list[dict]]:
        ray = self.ray
        queue = list(batches)
        if not queue:
            return
        own = not ray.is_initialized()
        if own:
            ray.init(address=self.address, num_cpus=None if self.address else self.workers,
                     include_dashboard=False, log_to_driver=False)
        actor_cls = ray.remote(num_cpus=1)(_RayWorker)
        actors = [actor_cls.remote(self.config) for _ in range(min(self.workers, len(queue)))]
        pending: dict = {}  # future -> actor

        def submit(actor) -> None:
            if queue:
                pending[actor.run.remote(queue.pop(0))] = actor

        try:
            for actor in actors:
                for _ in range(self.in_flight):  # keep each actor busy while the driver writes
                    submit(actor)
            while pending:
                [ready], _ = ray.wait(list(pending), num_returns=1)
                actor = pending.pop(ready)
                yield self._get(ready)
                submit(actor)
        finally:
            for actor in actors:
                ray.kill(actor)
            if own:
                ray.shutdown()

    def _get(self, future) -> list[dict]:
        ray = self.ray
        try:
            return ray.get(future)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            if isinstance(cause, ModDecodeError):
                raise cause from None
            raise RuntimeError(f"a Ray worker failed: {exc}") from None
        except ray.exceptions.RayActorError as exc:
            raise RuntimeError(f"a Ray worker died (out of memory, or killed?): {exc}; rerun to resume") from None


class _RayWorker:
    """Actor body: one Worker per actor process."""

    def __init__(self, config: SweepConfig):
        import os

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.worker = Worker(config)

    def run(self, batch: Batch) -> list[dict]:
        return self.worker.run(batch)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def make_backend(name: str, config: SweepConfig, *, workers: int = 1, address: str | None = None):
    """A backend by name: "local" or "ray" (workers = Ray actors; address = an existing cluster)."""
    if name == "local":
        if address is not None:
            raise ConfigError("--ray-address only applies to --backend ray")
        return LocalBackend(config)
    if name == "ray":
        return RayBackend(config, workers=max(workers, 1), address=address)
    raise UnknownNameError("backend", str(name), BACKENDS)


__all__ = ["BACKENDS", "LocalBackend", "RayBackend", "Worker", "make_backend"]
