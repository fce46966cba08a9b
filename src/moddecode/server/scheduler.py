"""Continuous batching for the server: requests join the running batch at the next decode step.

`JobScheduler` is the seam between the HTTP side and an engine: `submit` a request's jobs (rows),
each job receives `Event`s (text, result or error) on its request's queue, `Job.cancel` on a hang-up.
`Scheduler` (here) runs the transformers engine's `DecodeLoop`; `VllmScheduler` (vllm_scheduler.py)
hands the rows to vLLM's async engine, whose own scheduler batches them. `app.make_scheduler` picks one.

Every prompt (and every choice of it, for `n` > 1) of every request becomes a `Job`: one row of the
engine's `DecodeLoop`, with its own weights, divergence, strategy and limits. One worker thread steps
the loop while it has rows; a newcomer is prefilled at the next step and decodes alongside the rows
already running, a finished or cancelled row leaves at once. Strategies with their own loop (beam
search) cannot join a running batch: each such job runs alone between two steps.

Decoding is blocking torch work on models that are not re-entrant, so it all happens on that one
thread; events go back to each request's asyncio queue on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from ..decoding import DecodingConfig, Generation, RowSpec, TokenLogprob, get_strategy
from ..mod import MOD

log = logging.getLogger("moddecode.server")


class QueueFullError(Exception):
    """More prompts are waiting than the server accepts now (HTTP 429, retry later)."""


@dataclass(frozen=True)
class Event:
    """What a request receives for one of its rows: a text delta, the final result, or an error."""

    index: int  # the row's choice index in its request
    text: str = ""
    result: Generation | None = None
    error: Exception | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)  # of the tokens behind `text`


class Job:
    """One row of one request: a prompt (or conversation) with its weights, config and token limit."""

    def __init__(self, index: int, prompt, weights, config: DecodingConfig, max_new_tokens: int,
                 uses_reference: bool, sink: asyncio.Queue, *, logprobs: int | None = None):
        self.index = index  # the choice index in its request; sampling draws from seed + index
        self.prompt = prompt
        self.weights = weights  # [M] float64 tensor
        self.config = config
        self.max_new_tokens = max_new_tokens
        self.uses_reference = uses_reference
        self.logprobs = logprobs
        self.sink = sink
        self.loop = asyncio.get_running_loop()
        self.cancelled = False  # the client went away
        self.finished = False
        self.on_cancel: Callable[[], None] | None = None  # set by a scheduler that must act at once

    def cancel(self) -> None:
        """The client went away: stop decoding this row (called on the event loop)."""
        if not self.finished and not self.cancelled:
            self.cancelled = True
            if self.on_cancel is not None:
                self.on_cancel()

    def row(self) -> RowSpec:
        return RowSpec(self.prompt, self.weights, self.config, self.max_new_tokens, uses_reference=self.uses_reference,
                       index=self.index, logprobs=self.logprobs, key=self, is_cancelled=lambda: self.cancelled)

    def _send(self, event: Event) -> None:
        """Thread-safe hand-off to the event loop."""
        try:
            self.loop.call_soon_threadsafe(self.sink.put_nowait, event)
        except RuntimeError:  # loop closed during shutdown: nobody is listening
            pass

    def deliver(self, text: str, result: Generation | None, logprobs: list | None = None) -> None:
        self.finished = result is not None
        self._send(Event(self.index, text, result, logprobs=logprobs or []))

    def fail(self, error: Exception) -> None:
        self.finished = True
        self._send(Event(self.index, error=error))


class JobScheduler(ABC):
    """Decodes the server's jobs; every implementation answers with the same events."""

    max_queue: int

    @abstractmethod
    def start(self) -> None:
        """Start decoding (called in the app's lifespan, on its event loop)."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop decoding and release the engine's workers."""

    @property
    @abstractmethod
    def num_queued(self) -> int:
        """Rows waiting for a place."""

    @abstractmethod
    def submit(self, jobs: list[Job]) -> None:
        """Queue all rows of one request, or none of them: QueueFullError (429) if they do not fit now,
        a ModDecodeError (400) if the engine cannot decode one of them."""

    @abstractmethod
    def stats(self) -> dict:
        """Scheduling statistics for GET /health."""

    def _check_room(self, jobs: list[Job]) -> None:
        if self.num_queued + len(jobs) > self.max_queue:
            raise QueueFullError(f"the server queue is full ({self.num_queued} of {self.max_queue} rows waiting); "
                                 "retry shortly")


class Scheduler(JobScheduler):
    """Feeds jobs to one `DecodeLoop` on a worker thread, stepping it while any row is live."""

    def __init__(self, mod: MOD, *, max_batch: int = 32, max_queue: int = 256, window_s: float = 0.0):
        self.mod = mod
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.window_s = window_s  # an idle server waits this long for company before its first step
        self.loop = mod.engine.loop(max_rows=max_batch)
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # rows decoded in each recent step
        self.rows_started = 0
        self._solo: deque[Job] = deque()  # jobs of strategies that cannot join the running batch
        self._solo_job: Job | None = None
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.max_live = 0  # most rows decoded in one step so far
        self.rows_done = 0

    # ----- event-loop side -----

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="moddecode-decode", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 30)

    @property
    def num_queued(self) -> int:
        return self.loop.num_waiting + len(self._solo)

    @property
    def queued(self) -> list[Job]:
        """The jobs waiting for a place, oldest first."""
        return [*(spec.key for spec in self.loop.waiting), *self._solo]

    @property
    def running(self) -> list[Job]:
        """The jobs being decoded now."""
        return [row.spec.key for row in self.loop.live] + ([self._solo_job] if self._solo_job else [])

    def submit(self, jobs: list[Job]) -> None:
        """Queue all rows of one request, or none of them (QueueFullError) if they do not fit now."""
        if self._thread is None:
            raise RuntimeError("Scheduler.start() was not called")
        self._check_room(jobs)
        for job in jobs:
            if get_strategy(job.config.strategy).choose is None:
                self._solo.append(job)
        self.loop.submit([job.row() for job in jobs if get_strategy(job.config.strategy).choose is not None])
        self._wake.set()

    def stats(self) -> dict:
        return {"queued": self.num_queued, "running": len(self.running), "steps": self.loop.steps,
                "rows_started": self.rows_started, "rows_done": self.rows_done, "max_running": self.max_live,
                "max_batch": self.max_batch, "recent_batch_sizes": list(self.batch_sizes)[-20:]}

    # ----- worker-thread side -----

    def _run(self) -> None:
        idle = True
        while not self._stopping:
            if self._solo and not self.loop.live:
                self._run_solo(self._solo.popleft())
            elif self.loop.busy:
                if idle and self.window_s:  # let requests sent together be prefilled together
                    time.sleep(self.window_s)
                idle = False
                self._step()
            else:
                idle = True
                self._wake.wait(0.5)
                self._wake.clear()

    def _step(self) -> None:
        try:
            events = self.loop.step()
        except Exception as exc:  # a fault of the step itself: fail every live row, keep serving
            log.exception("decode step failed")
            for row in self.loop.live:
                row.spec.key.fail(exc)
            self.loop = self.mod.engine.loop(max_rows=self.max_batch)
            return
        self.max_live = max(self.max_live, self.loop.last_step_rows)
        if self.loop.last_step_rows:
            self.batch_sizes.append(self.loop.last_step_rows)
        self.rows_started += self.loop.last_admitted
        for event in events:
            job: Job = event.key
            if event.error is not None:
                job.fail(event.error)
                self.rows_done += 1
            else:
                job.deliver(event.delta.text, event.delta.result, event.delta.logprobs)
                self.rows_done += event.delta.result is not None

    def _run_solo(self, job: Job) -> None:
        if job.cancelled:
            return
        self._solo_job, self.rows_started = job, self.rows_started + 1
        self.batch_sizes.append(1)
        try:
            result, = self.mod.generate([job.prompt], job.weights.tolist(), job.config,
                                        max_new_tokens=job.max_new_tokens, return_diagnostics=True)
            job.deliver(result.text, result)
        except Exception as exc:
            if not isinstance(exc, ValueError):
                log.exception("decoding failed")
            job.fail(exc)
        self._solo_job = None
        self.rows_done += 1
