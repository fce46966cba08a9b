"""`VllmEngine`: MOD decoding on vLLM (paged KV cache, continuous batching, multi-LoRA, tensor and
pipeline parallelism), with the same text as moddecode's transformers engine.

Each prompt (a MOD row) becomes sibling requests, one per policy plus the reference when its weights
need it, all on ONE base model: LoRA adapters become `LoRARequest`s, system-prompted variants differ
only in their prompt tokens (each policy's own chat formatting, as `Policy.encode` builds it). The
logits processor (processor.py) combines the siblings' logits each step and forces them all to the
chosen token; `SiblingGroup` (siblings.py) checks they agree and streams the text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid
from collections import deque
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ...decoding import DecodingConfig, TextDelta
from ...decoding.text import TextTracker
from ...errors import ConfigError, UnknownNameError
from ...policy import Policy, check_shared_vocabulary
from ...weights import Weighting
from ..base import Engine
from .admission import Capacity
from .protocol import PROCESSOR_NAME, GroupTag
from .siblings import SiblingGroup

# Settings the mechanism itself depends on: a user may not override them.
RESERVED_OPTIONS = {
    "model": "the base model is the policies' own",
    "tokenizer": "prompts are tokenized by the policies' own tokenizer",
    "logits_processors": "MOD installs its own logits processor",
    "enable_chunked_prefill": "siblings must finish prefilling in the same step (chunked prefill is off)",
    "speculative_config": "vLLM runs no custom logits processor with speculative decoding",
    "skip_tokenizer_init": "set by moddecode",
}
# moddecode's own engine options (the rest go to vLLM).
MOD_OPTIONS = {
    # Admit a group only while the KV cache can hold every admitted sibling up to its max length, so
    # vLLM never has to preempt one (a preempted sibling fails its group). False: admit as vLLM would
    # and rely on the lockstep check (more concurrency when outputs end well before their limit).
    "reserve_kv_cache": True,
    # Build vLLM's async engine (for `moddecode serve`, which sets it) instead of the offline `LLM`
    # that `MOD.generate` steps; the server starts it in its event loop.
    "async_engine": False,
}
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM's max_lora_rank accepts


def _model_folder(policy: Policy) -> str:
    """The folder the policy's base model was loaded from (the converted one for .gguf / 'smollm2')."""
    model = policy.model
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = core.config._name_or_path
    return str(Path(name).resolve()) if Path(name).exists() else name


def _adapter_folder(policy: Policy) -> str | None:
    if policy.adapter_name is None:
        return None
    return next(folder for folder, name in policy.base.adapters.items() if name == policy.adapter_name)


def _lora_rank(folder: str) -> int:
    config = json.loads((Path(folder) / "adapter_config.json").read_text())
    return max([int(config.get("r", 8)), *(int(r) for r in (config.get("rank_pattern") or {}).values())])


class VllmEngine(Engine):
    """MOD over `policies` (and an optional `reference`) on one vLLM engine.

    All of them must be the same base model, each optionally with a LoRA adapter and/or a system
    prompt. `options` (MOD's engine_options) are passed to `vllm.LLM`: tensor_parallel_size,
    pipeline_parallel_size, max_lora_rank, max_model_len, kv_cache_memory_bytes,
    gpu_memory_utilization, enforce_eager, ... One decode at a time per engine.
    """

    name = "vllm"

    def __init__(self, policies: Sequence[Policy], reference: Policy | None = None, vocab_size: int | None = None,
                 **options):
        policies = [policies] if isinstance(policies, Policy) else list(policies)
        if not policies:
            raise ConfigError("the vLLM engine needs at least one policy", param="policies")
        everyone = [*policies, *([reference] if reference is not None else [])]
        for p in everyone:
            if not isinstance(p, Policy):
                raise ConfigError(f"policies and reference must be moddecode.Policy objects, got "
                                  f"{type(p).__name__}; load them with Policy.load(...)", param="policies")
        folders = {p.name: _model_folder(p) for p in everyone}
        if len(set(folders.values())) > 1:
            raise ConfigError(
                "the vLLM engine runs policies that are LoRA adapters and/or system-prompted variants of ONE "
                f"base model, but these policies have different bases: {folders}. Use one base for all, or "
                "the transformers engine, which combines different models", param="policies")
        super().__init__(policies, reference, vocab_size or check_shared_vocabulary(everyone))
        self.tokenizer = policies[0].tokenizer
        self.folder = next(iter(folders.values()))
        adapters = sorted({a for a in map(_adapter_folder, everyone) if a is not None})
        own = {name: options.pop(name, default) for name, default in MOD_OPTIONS.items()}
        for name in MOD_OPTIONS:
            if not isinstance(own[name], bool):
                raise ConfigError(f"engine option {name} must be true or false, got {own[name]!r}",
                                  param="engine_options")
        options = self._options(options, adapters, policies[0])
        from vllm.lora.request import LoRARequest

        self.lora_requests = {a: LoRARequest(f"moddecode-{i}", i + 1, a) for i, a in enumerate(adapters)}
        self.reserve_kv_cache = own["reserve_kv_cache"]
        self.engine_kwargs = dict(model=self.folder, tokenizer=self.folder, logits_processors=[PROCESSOR_NAME],
                                  enable_chunked_prefill=False, **options)
        self.llm = None  # vllm.LLM: decode() steps it
        self.async_llm = None  # vllm.v1 AsyncLLM: the server's (see asynchronous.py)
        self._busy = False
        if not own["async_engine"]:
            from vllm import LLM

            self.llm = LLM(**self.engine_kwargs)
            self._read_config(self.llm.llm_engine.vllm_config)

    def start_async(self):
        """Build vLLM's async engine (AsyncLLM: it steps by itself, continuously batching whatever
        requests arrive) for this engine's policies; call it in the event loop that will use it."""
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        if self.async_llm is None:
            kwargs = {"disable_log_stats": True, **self.engine_kwargs}
            self.async_llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))
            self._read_config(self.async_llm.vllm_config)
        return self.async_llm

    def _read_config(self, config) -> None:
        self.max_model_len = config.model_config.max_model_len
        self.block_size = config.cache_config.block_size
        # (one block is vLLM's null block)
        kv_blocks = max((config.cache_config.num_gpu_blocks or 0) - 1, 0) if self.reserve_kv_cache else 0
        self.capacity = Capacity(config.scheduler_config.max_num_seqs,
                                 config.scheduler_config.max_num_batched_tokens, kv_blocks)

    def close(self) -> None:
        """Stop vLLM's engine core (its process, in multi-process mode)."""
        if self.llm is not None:
            self.llm.llm_engine.engine_core.shutdown()
        if self.async_llm is not None:
            self.async_llm.shutdown()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # scores are computed inside vLLM's workers; weights travel as numbers

    @staticmethod
    def _options(options: dict, adapters: list[str], first: Policy) -> dict:
        from vllm.engine.arg_utils import EngineArgs

        known = sorted({f.name for f in dataclasses.fields(EngineArgs)} - set(RESERVED_OPTIONS))
        for name in options:
            if name in RESERVED_OPTIONS:
                raise ConfigError(f"engine option {name!r} cannot be set for MOD: {RESERVED_OPTIONS[name]}",
                                  param="engine_options")
            if name not in known:
                raise UnknownNameError("engine option", str(name), sorted([*known, *MOD_OPTIONS]))
        dtype = next(first.model.parameters()).dtype
        defaults = {"dtype": str(dtype).removeprefix("torch.")}
        if adapters:
            rank = max(_lora_rank(a) for a in adapters)
            defaults.update(enable_lora=True, max_loras=len(adapters),
                            max_lora_rank=next((r for r in LORA_RANKS if r >= rank), rank))
        if adapters and options.get("enable_lora") is False:
            raise ConfigError("engine option enable_lora=False, but some policies are LoRA adapters",
                              param="engine_options")
        return {**defaults, **options}

    def decode(self, prompts: list[str], weighting: Weighting, config: DecodingConfig, *,
               limits: list[int], diagnostics: bool = False, logprobs: int | None = None) -> Iterator[TextDelta]:
        """Greedy or sampled MOD decoding of prompt i under weighting column i; yields streamed text
        like the transformers engine, each prompt's last delta carrying its `Generation`.

        Raises LockstepError if a prompt's siblings fall out of step (no text past that point is emitted).
        """
        if self.llm is None:
            raise ConfigError("this vLLM engine was built for the server (engine option async_engine=true); "
                              "build MOD without that option to call generate() or stream()")
        if logprobs is not None:
            raise ConfigError("per-token log-probs are not available on the vLLM engine yet; use the transformers "
                              "engine (the default) for them", param="logprobs")
        groups, requests = self._plan(prompts, weighting, config, limits, diagnostics)  # bad input fails now
        return self._run(groups, requests)

    def _plan(self, prompts: list, weighting: Weighting, config: DecodingConfig, limits: list[int],
              diagnostics: bool, first_index: int = 0):
        """Validate a call and build its sibling groups and vLLM requests (nothing is submitted yet).

        Prompt j is row `first_index + j` of its call: its group's index, and its sampling stream (seed +
        that index)."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if config.strategy not in ("greedy", "sample"):
            raise ConfigError(f"strategy {config.strategy!r} is not available on the vLLM engine (greedy and "
                              "sample are); use the transformers engine (engine='transformers', the default)",
                              param="strategy")
        if diagnostics:
            raise ConfigError("per-token diagnostics are not available on the vLLM engine; use the transformers "
                              "engine (the default) for them", param="return_diagnostics")
        div = weighting.divergence
        if div.name == "custom":
            raise ConfigError("a user-defined divergence cannot travel to vLLM's workers; use a named one "
                              "('reverse_kl', 'forward_kl', 'jsd', 'alpha:<a>') or the transformers engine",
                              param="divergence")
        m, b = len(self.policies), len(prompts)
        w = weighting.matrix.double().cpu()
        if tuple(w.shape) != (m, b) or len(limits) != b:
            raise ConfigError(f"{b} prompts need weights of shape [{m}, {b}] and {b} limits, got "
                              f"{tuple(w.shape)} and {len(limits)}")
        call = uuid.uuid4().hex[:12]
        groups, requests = [], []
        for j, prompt in enumerate(prompts):
            column, row = w[:, j], first_index + j
            # As the transformers engine: the reference runs only for rows whose weights need it.
            uses_reference = div.needs_reference(float(column.sum()))
            members = [*self.policies, *([self.reference] if uses_reference else [])]
            if len(members) == 1:
                members.append(members[0])  # a witness: a lone row could not show a failure by disagreeing
            eos = set() if config.ignore_eos else set().union(*(p.eos_token_ids() for p in members))
            params = SamplingParams(
                temperature=0.0, max_tokens=limits[j], ignore_eos=True, stop_token_ids=sorted(eos),
                detokenize=False, output_kind=RequestOutputKind.DELTA)
            ids = [p.encode(prompt) for p in members]
            group = SiblingGroup(row, [f"mod-{call}-{j}-{k}" for k in range(len(members))],
                                 TextTracker(self.tokenizer, config.stop), limits[j], eos, column.tolist(), div.name,
                                 kv_blocks=self._kv_blocks_needed(ids, limits[j]))
            self._check_fits(group, ids)
            tag = dict(group=f"{call}-{j}", members=len(members), num_policies=m, reference=uses_reference,
                       weights=tuple(column.tolist()), divergence=div.name, scope=config.scope,
                       strategy=config.strategy, vocab_size=self.vocab_size,
                       seed=None if config.seed is None else config.seed + row,
                       temperature=config.temperature, top_k=config.top_k, top_p=config.top_p)
            rows = []
            for k, (policy, prompt_ids) in enumerate(zip(members, ids)):
                row_params = params.clone()
                row_params.extra_args = GroupTag(member=k, **tag).to_extra_args()
                adapter = _adapter_folder(policy)
                rows.append((group.request_ids[k], {"prompt_token_ids": prompt_ids}, row_params,
                             self.lora_requests[adapter] if adapter else None))
            groups.append(group)
            requests.append(rows)
        return groups, requests

    def _kv_blocks_needed(self, ids: list[list[int]], limit: int) -> int:
        """KV-cache blocks the siblings take at their longest (0 when not reserving)."""
        return sum(-(-(len(i) + limit) // self.block_size) for i in ids) if self.kv_blocks else 0

    @property
    def kv_blocks(self) -> int:
        """KV-cache blocks MOD groups may reserve (0: not reserving)."""
        return self.capacity.kv_blocks

    def _check_fits(self, group: SiblingGroup, ids: list[list[int]]) -> None:
        index, limit = group.index, group.limit
        if group.kv_blocks > self.kv_blocks > 0:
            raise ConfigError(f"prompt {index}: its {len(ids)} sibling requests need {group.kv_blocks} KV-cache "
                              f"blocks at full length, more than vLLM has ({self.kv_blocks}); give it more KV-cache "
                              "memory (engine_options kv_cache_memory_bytes or gpu_memory_utilization), or lower "
                              "max_new_tokens", param="max_new_tokens")
        longest = max(len(i) for i in ids)
        if longest + limit > self.max_model_len:
            raise ConfigError(f"prompt {index}: {longest} prompt tokens + {limit} new tokens exceed vLLM's "
                              f"max_model_len {self.max_model_len}; shorten it, lower max_new_tokens, or raise "
                              "engine_options max_model_len")
        cap = self.capacity
        if sum(map(len, ids)) > cap.max_batched_tokens or len(ids) > cap.max_num_seqs:
            raise ConfigError(f"prompt {index}: its {len(ids)} sibling requests ({sum(map(len, ids))} prompt "
                              f"tokens) do not fit in one vLLM step (max_num_batched_tokens "
                              f"{cap.max_batched_tokens}, max_num_seqs {cap.max_num_seqs}), so they cannot "
                              "start together; raise those engine_options or shorten the prompt")

    def _run(self, groups: list[SiblingGroup], requests: list[list[tuple]]) -> Iterator[TextDelta]:
        engine = self.llm.llm_engine
        if self._busy:  # its step loop would take the other decode's outputs
            raise ConfigError("this vLLM engine is already decoding; run one decode at a time per engine")
        self._busy = True
        waiting = deque(zip(groups, requests))
        active: dict[str, tuple[SiblingGroup, int]] = {}  # request id -> (group, member)
        try:
            while waiting or active:
                self._admit(waiting, active)
                touched: dict[int, SiblingGroup] = {}
                for out in engine.step():
                    if out.request_id not in active:
                        continue  # a request aborted a step ago
                    group, member = active[out.request_id]
                    completion = out.outputs[0]
                    group.receive(member, list(completion.token_ids),
                                  completion.finish_reason if out.finished else None)
                    if out.finished:
                        del active[out.request_id]
                    touched[id(group)] = group
                for group in touched.values():
                    yield from group.advance()
                    if group.done:
                        self._abort(group.unfinished_requests(), active)
        finally:
            self._abort(list(active), active)
            self._busy = False

    def _admit(self, waiting: deque, active: dict) -> None:
        """Submit the groups one step can start (see admission.py); running rows decode one token each."""
        groups = {id(g): g for g, _ in active.values()}.values()
        admitted = self.capacity.admit(waiting, rows=len(active), tokens=len(active),
                                       blocks=sum(g.kv_blocks for g in groups))
        if admitted:
            with self._scheduler_held():
                for group, rows in admitted:
                    for member, (request_id, prompt, params, lora) in enumerate(rows):
                        self.llm.llm_engine.add_request(request_id, prompt, params, lora_request=lora)
                        active[request_id] = (group, member)

    @contextlib.contextmanager
    def _scheduler_held(self):
        """An engine core in another process keeps stepping while requests arrive one message at a time,
        and could start a group's first sibling without the others: hold its scheduler (no step starts;
        adds queue up) until the whole batch of groups is in. In-process, nothing steps between adds."""
        core = self.llm.llm_engine.engine_core
        if not hasattr(core, "call_utility"):
            yield
            return
        core.call_utility("pause_scheduler", "keep", False)  # keep running requests; keep the prefix cache
        try:
            yield
        finally:
            core.call_utility("resume_scheduler")

    def _abort(self, request_ids: list[str], active: dict) -> None:
        if request_ids:
            self.llm.llm_engine.abort_request(request_ids)
        for request_id in request_ids:
            active.pop(request_id, None)
