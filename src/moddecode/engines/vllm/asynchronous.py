"""`AsyncVllm`: MOD rows on vLLM's async engine (`AsyncLLM`), for a server with many clients.

vLLM's engine core steps by itself and batches every request it holds (continuous batching); this
driver only decides when a MOD row's sibling requests are handed to it, and reads them back:

- `submit` validates a row and builds its sibling group and requests with the engine's own `_plan`
  (the same requests `VllmEngine.decode` sends: tags, LoRA requests, per-policy prompts);
- one admission task submits waiting groups whenever `Capacity.admit` (admission.py) says one vLLM
  step can start all their siblings. While it adds a batch of groups, vLLM's scheduler is paused
  (`pause_scheduler(mode="keep")`: running requests keep their KV cache), so no step starts half a
  group;
- one task per live row reads its siblings' outputs into its `SiblingGroup`, which checks that they
  agree and streams the text; a cancelled row's requests are aborted.

Everything runs on the event loop that called `start` (vLLM's output handler runs there too).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from ...decoding import DecodingConfig, Generation
from ...weights import Weighting
from .admission import prompt_tokens
from .siblings import SiblingGroup

log = logging.getLogger("moddecode.vllm")


@dataclass(eq=False)
class Ticket:
    """One submitted MOD row: its sibling group, its vLLM requests, and where its text goes."""

    group: SiblingGroup
    requests: list[tuple]  # (request_id, prompt, SamplingParams, LoRARequest | None) per sibling
    deliver: Callable[[str, Generation | None], None]  # text delta, and the result with the last one
    fail: Callable[[Exception], None]
    cancelled: bool = False
    prefilled: bool = False  # every sibling has returned a token (its prompt left vLLM's token budget)
    task: asyncio.Task | None = field(default=None, repr=False)

    def cancel(self) -> None:
        """Stop decoding this row (a client hung up): its requests are aborted, nothing more is delivered."""
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()


class AsyncVllm:
    """Drives a `VllmEngine` built with engine option async_engine=True.

    max_rows: MOD rows decoded at once (more wait); window_s: how long an idle driver waits for
    company before admitting, so requests sent together are prefilled together.
    """

    def __init__(self, engine, *, max_rows: int | None = None, window_s: float = 0.0):
        self.engine = engine
        self.max_rows = max_rows
        self.window_s = window_s
        self.llm = None
        self._waiting: deque[tuple[SiblingGroup, list]] = deque()
        self._tickets: dict[int, Ticket] = {}  # id(group) -> ticket, waiting or live
        self._live: dict[int, Ticket] = {}
        self._wake: asyncio.Event | None = None
        self._admitter: asyncio.Task | None = None
        self.rows_started = self.rows_done = self.rows_cancelled = self.max_live = 0

    # ----- lifecycle -----

    def start(self) -> None:
        """Build vLLM's async engine (loads the model) and start admitting; call on the event loop."""
        self.llm = self.engine.start_async()
        self._wake = asyncio.Event()
        self._admitter = asyncio.create_task(self._admit_forever(), name="moddecode-vllm-admission")

    async def stop(self) -> None:
        if self._admitter is not None:
            self._admitter.cancel()
        for ticket in list(self._tickets.values()):
            ticket.cancel()
        await asyncio.gather(*(t.task for t in self._live.values() if t.task is not None), return_exceptions=True)
        self.engine.close()
        self.engine.async_llm = None

    # ----- requests -----

    def submit(self, prompt, weighting: Weighting, config: DecodingConfig, limit: int, *, index: int,
               deliver: Callable, fail: Callable) -> Ticket:
        """Plan one row (ConfigError now if vLLM cannot decode it) and queue it; returns its ticket."""
        [group], [requests] = self.engine._plan([prompt], weighting, config, [limit], False, first_index=index)
        return Ticket(group, requests, deliver, fail)

    def enqueue(self, tickets: list[Ticket]) -> None:
        """Queue planned tickets (all of one request, after all of them were planned)."""
        for ticket in tickets:
            self._tickets[id(ticket.group)] = ticket
            self._waiting.append((ticket.group, ticket.requests))
        self._wake.set()

    @property
    def num_queued(self) -> int:
        return sum(not self._tickets[id(g)].cancelled for g, _ in self._waiting)

    @property
    def num_running(self) -> int:
        return len(self._live)

    def stats(self) -> dict:
        return {"queued": self.num_queued, "running": self.num_running, "rows_started": self.rows_started,
                "rows_done": self.rows_done, "rows_cancelled": self.rows_cancelled, "max_running": self.max_live, "max_batch": self.max_rows,
                "engine": "vllm"}

    # ----- admission -----

    async def _admit_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.window_s and not self._live:
                await asyncio.sleep(self.window_s)
            for group, _ in [w for w in self._waiting if self._tickets[id(w[0])].cancelled]:
                self._waiting.remove((group, _))
                del self._tickets[id(group)]
            live = list(self._live.values())
            admitted = self.engine.capacity.admit(
                self._waiting, rows=sum(len(t.requests) for t in live),
                tokens=sum(len(t.requests) if t.prefilled else prompt_tokens(t.requests) for t in live),
                blocks=sum(t.group.kv_blocks for t in live), groups=len(live), max_groups=self.max_rows)
            if admitted:
                await self._add([self._tickets[id(group)] for group, _ in admitted])

    async def _add(self, tickets: list[Ticket]) -> None:
        """Hand whole groups to vLLM while its scheduler is held, so each starts in one step."""
        core = self.llm.engine_core
        await core.pause_scheduler_async(mode="keep", clear_cache=False)
        try:
            for ticket in tickets:
                self._live[id(ticket.group)] = ticket
                self.rows_started += 1
                collectors = []
                try:
                    for request_id, prompt, params, lora in ticket.requests:
                        collectors.append(await self.llm.add_request(request_id, prompt, params, lora_request=lora))
                except Exception as exc:  # e.g. vLLM refused a request: fail this row, keep serving
                    log.exception("adding MOD sibling requests to vLLM failed")
                    ticket.fail(exc)
                    ticket.cancelled = True
                ticket.task = asyncio.create_task(self._drive(ticket, collectors))
            self.max_live = max(self.max_live, len(self._live))
        finally:
            await core.resume_scheduler_async()

    # ----- one row -----

    async def _drive(self, ticket: Ticket, collectors: list) -> None:
        """Read the siblings' outputs until the row is done, failed or cancelled."""
        group = ticket.group
        try:
            while not (group.done or ticket.cancelled):
                for member, collector in enumerate(collectors):
                    if group.finish[member] is None:
                        out = await collector.get()
                        completion = out.outputs[0]
                        group.receive(member, list(completion.token_ids),
                                      completion.finish_reason if out.finished else None)
                if not ticket.prefilled:
                    ticket.prefilled = True
                    self._wake.set()  # its prompt tokens no longer take vLLM's step budget
                for delta in group.advance(settled=False):
                    ticket.deliver(delta.text, delta.result)
        except asyncio.CancelledError:
            pass  # cancelled: the client is gone
        except Exception as exc:  # LockstepError, InfeasibleWeightsError, a dead engine
            if not isinstance(exc, ValueError):
                log.warning("MOD row on vLLM failed: %s", exc)
            ticket.fail(exc)
        finally:
            ticket.task = None
            unfinished = group.unfinished_requests() if collectors else []
            if unfinished and self.llm is not None:
                try:
                    await self.llm.abort(unfinished)
                except Exception:  # the engine is gone: nothing left to abort
                    log.debug("aborting %s failed", unfinished, exc_info=True)
            self._live.pop(id(group), None)
            self._tickets.pop(id(group), None)
            self.rows_done += 1
            self.rows_cancelled += ticket.cancelled and not group.done
            self._wake.set()
