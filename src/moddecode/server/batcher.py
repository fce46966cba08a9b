"""Dynamic batching: concurrent requests with different weightings share the same forward passes.

Every prompt of every request becomes a `Job`. An idle batcher waits `window_s` for company, then
takes the oldest job plus every waiting job whose settings can be decoded with it (same divergence,
strategy, scope, temperature, ...; see `Job.batch_key`), up to `max_batch` rows, and decodes them in
ONE `MOD.stream` call with one weight vector and one token limit per row. Jobs arriving during a
decode wait for the next batch. Decoding is blocking torch work on a model that is not re-entrant, so
it runs on a single worker thread; deltas go back to each job's asyncio queue on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from ..decoding import Generation
from ..errors import ModDecodeError
from ..mod import MOD

log = logging.getLogger("moddecode.server")


class QueueFullError(Exception):
    """More prompts are waiting than the server accepts (HTTP 429)."""


@dataclass(frozen=True)
class DecodeSettings:
    """Decoding options that must be equal for rows to share one decode call."""

    divergence: str  # canonical name
    strategy: str = "greedy"
    scope: str = "sequence"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    num_beams: int = 4
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False


@dataclass(frozen=True)
class Event:
    """What a request receives for one of its prompts: a text delta, the final result, or an error."""

    index: int  # the prompt's position in its request (the choice index)
    text: str = ""
    result: Generation | None = None
    error: Exception | None = None


class Job:
    """One prompt of one request, with its own weights and token limit."""

    def __init__(self, index: int, prompt: str, weights: tuple[float, ...], max_new_tokens: int,
                 settings: DecodeSettings, sink: asyncio.Queue):
        self.index = index
        self.prompt = prompt
        self.weights = weights
        self.max_new_tokens = max_new_tokens
        self.settings = settings
        self.sink = sink
        self.loop = asyncio.get_running_loop()
        self.cancelled = False  # the client went away
        self.emitted = False  # some text has been sent
        self.finished = False
        self.batch_key = self._batch_key()

    def _batch_key(self) -> tuple:
        s = self.settings
        key: tuple = (s,) if s.strategy != "beam" else (s, self.max_new_tokens)  # beam has no per-row limits
        # One generator drives a whole sampled batch: a seed is only reproducible if decoded alone.
        seeded = s.strategy == "sample" and s.seed is not None
        # Negative weights can be infeasible outside reverse KL, which aborts the whole decode call;
        # alone, the error reaches only the request that caused it.
        risky = s.divergence != "reverse_kl" and min(self.weights) < 0
        return key + ((id(self),) if seeded or risky else ())

    def _send(self, event: Event) -> None:
        """Thread-safe hand-off to the event loop."""
        try:
            self.loop.call_soon_threadsafe(self.sink.put_nowait, event)
        except RuntimeError:  # loop closed during shutdown: nobody is listening
            pass

    def deliver(self, text: str, result: Generation | None) -> None:
        self.emitted = self.emitted or bool(text)
        self.finished = result is not None
        self._send(Event(self.index, text, result))

    def fail(self, error: Exception) -> None:
        self.finished = True
        self._send(Event(self.index, error=error))


class DivergenceVariants:
    """One MOD per divergence, all sharing the loaded policies (a MOD object is just a few references)."""

    def __init__(self, mod: MOD, max_variants: int = 64):
        self.mod = mod
        self.max_variants = max_variants
        self._mods: dict[str, MOD] = {mod.divergence.name: mod}

    def __call__(self, divergence: str) -> MOD:
        if divergence not in self._mods:
            if len(self._mods) >= self.max_variants:  # alpha:<a> allows unboundedly many names
                del self._mods[next(k for k in self._mods if k != self.mod.divergence.name)]
            self._mods[divergence] = MOD(self.mod.policies, reference=self.mod.reference, divergence=divergence)
        return self._mods[divergence]


class Batcher:
    """Collects jobs, groups compatible ones, decodes each group in one call on a worker thread."""

    def __init__(self, mod_for: Callable[[str], MOD], *, max_batch: int = 32, max_queue: int = 256,
                 window_s: float = 0.01):
        self.mod_for = mod_for
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.window_s = window_s
        self._pending: list[Job] = []
        self.running: list[Job] = []  # the jobs being decoded now
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="moddecode-decode")
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # most recent decode calls, in rows
        self.num_batches = 0
        self.num_rows = 0

    # ----- event-loop side -----

    def start(self) -> None:
        """Start the scheduling task (call from the running event loop, e.g. in the app's lifespan)."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="moddecode-batcher")

    async def stop(self) -> None:
        for job in self._pending:
            job.cancelled = True
        self._pending.clear()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False, cancel_futures=True)

    def submit(self, jobs: list[Job]) -> None:
        """Queue all prompts of one request, or none of them (QueueFullError) if they do not fit."""
        if self._task is None:
            raise RuntimeError("Batcher.start() was not called")
        if len(self._pending) + len(jobs) > self.max_queue:
            raise QueueFullError(f"the server queue is full ({len(self._pending)} of {self.max_queue} prompts "
                                 "waiting); retry shortly")
        self._pending.extend(jobs)
        self._wake.set()

    @property
    def queued(self) -> list[Job]:
        """The jobs waiting for a batch, oldest first (a copy)."""
        return list(self._pending)

    def stats(self) -> dict:
        return {"queued": len(self._pending), "running": len(self.running), "batches": self.num_batches,
                "rows": self.num_rows, "max_batch_size": max(self.batch_sizes, default=0),
                "recent_batch_sizes": list(self.batch_sizes)[-20:]}

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
                await asyncio.sleep(self.window_s)  # idle until now: let concurrent requests arrive
            batch = self._take()
            if not batch:
                continue
            self.running = batch
            try:
                await loop.run_in_executor(self._executor, self._decode, batch)
            except Exception:  # never let one batch stop the scheduler
                log.exception("batch failed")
            finally:
                self.running = []

    def _take(self) -> list[Job]:
        """The oldest job's group (up to max_batch), removed from the queue in arrival order."""
        self._pending = [j for j in self._pending if not j.cancelled]
        if not self._pending:
            return []
        key = self._pending[0].batch_key
        batch = [j for j in self._pending if j.batch_key == key][: self.max_batch]
        taken = {id(j) for j in batch}
        self._pending = [j for j in self._pending if id(j) not in taken]
        return batch

    # ----- worker-thread side -----

    def _decode(self, jobs: list[Job]) -> None:
        self.batch_sizes.append(len(jobs))
        self.num_batches += 1
        self.num_rows += len(jobs)
        try:
            self._decode_rows(jobs)
        except ModDecodeError as exc:
            self._recover(jobs, exc)
        except Exception as exc:
            log.exception("decoding failed")
            for job in jobs:
                if not job.finished:
                    job.fail(exc)

    def _decode_rows(self, jobs: list[Job]) -> None:
        s = jobs[0].settings
        mod = self.mod_for(s.divergence)
        prompts = [j.prompt for j in jobs]
        weights = [list(j.weights) for j in jobs]  # one weight vector per row
        common = dict(strategy=s.strategy, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, seed=s.seed,
                      scope=s.scope, stop=list(s.stop) or None, ignore_eos=s.ignore_eos)
        if s.strategy == "beam":  # the best beam is known only at the end: one delta with the whole text
            results = mod.generate(prompts, weights, max_new_tokens=jobs[0].max_new_tokens, num_beams=s.num_beams,
                                   return_diagnostics=True, **common)
            for job, result in zip(jobs, results, strict=True):
                job.deliver(result.text, result)
            return
        limits = [j.max_new_tokens for j in jobs]  # one token limit per row
        for delta in mod.stream(prompts, weights, max_new_tokens=limits, **common):
            jobs[delta.index].deliver(delta.text, delta.result)
            if all(j.cancelled or j.finished for j in jobs):
                break  # nobody is waiting for the rest

    def _recover(self, jobs: list[Job], exc: ModDecodeError) -> None:
        """One row (e.g. infeasible weights) can fail a whole call: retry untouched rows alone."""
        if len(jobs) == 1:
            jobs[0].fail(exc)
            return
        for job in jobs:
            if job.finished or job.cancelled:
                continue
            if job.emitted:  # its text so far came from the failed call; restarting would repeat it
                job.fail(exc)
            else:
                self._decode([job])
