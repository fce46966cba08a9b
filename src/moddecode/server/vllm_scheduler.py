"""The server's jobs on vLLM's async engine: `VllmScheduler` (the `JobScheduler` for engine 'vllm').

Each job (one prompt, one choice) becomes one MOD row of `AsyncVllm` (engines/vllm/asynchronous.py):
sibling requests that vLLM's own scheduler batches with every other request it holds, so concurrent
HTTP requests decode together (continuous batching on vLLM's paged KV cache). Its events are the
ones `Scheduler` sends for the transformers engine; a hang-up aborts the row's requests at once.
"""

from __future__ import annotations

import logging

from ..divergences import get_divergence
from ..errors import ConfigError, ModDecodeError
from ..mod import MOD
from ..weights import Weighting
from .errors import from_library
from .scheduler import Job, JobScheduler

log = logging.getLogger("moddecode.server")
# DecodingConfig fields as the request names them
WIRE_NAMES = {"max_new_tokens": "max_tokens", "return_diagnostics": None}


class VllmScheduler(JobScheduler):
    def __init__(self, mod: MOD, *, max_batch: int = 32, max_queue: int = 256, window_s: float = 0.0):
        from ..engines.vllm.asynchronous import AsyncVllm

        if mod.engine.llm is not None or not hasattr(mod.engine, "start_async"):
            raise ConfigError("the server runs vLLM's async engine: build the MOD with engine='vllm' and "
                              "engine_options={'async_engine': True} (load_server_config does)", param="engine")
        self.mod = mod
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.driver = AsyncVllm(mod.engine, max_rows=max_batch, window_s=window_s)
        self._started = False

    def start(self) -> None:
        self.driver.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            await self.driver.stop()

    @property
    def num_queued(self) -> int:
        return self.driver.num_queued

    def submit(self, jobs: list[Job]) -> None:
        if not self._started:
            raise RuntimeError("VllmScheduler.start() was not called")
        self._check_room(jobs)
        tickets = []
        try:
            for job in jobs:  # plan every row before queueing any: a bad one fails the request alone
                if job.logprobs is not None:
                    raise ConfigError("logprobs are not available on the vLLM engine; serve this policy set with "
                                      "the transformers engine (engine: transformers, the default) for them",
                                      param="logprobs")
                weighting = Weighting(job.weights.double().reshape(-1, 1), get_divergence(job.config.divergence),
                                      job.uses_reference)
                tickets.append(self.driver.submit(job.prompt, weighting, job.config, job.max_new_tokens,
                                                  index=job.index, deliver=job.deliver, fail=job.fail))
        except ModDecodeError as exc:
            param = getattr(exc, "param", None)
            raise from_library(exc, param=WIRE_NAMES.get(param, param)) from None
        for job, ticket in zip(jobs, tickets):
            job.on_cancel = ticket.cancel
        self.driver.enqueue(tickets)

    def stats(self) -> dict:
        return self.driver.stats()
