"""A MOD whose decode steps wait for a gate: lets a test hold a server busy deterministically."""

from __future__ import annotations

import threading

from moddecode import MOD


class GatedMOD(MOD):
    """Each decode step waits for `gate` after new rows have joined and before tokens are chosen;
    `yielded` counts the steps that went on to choose tokens."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.yielded = 0
        make_loop = self.engine.loop

        def gated_loop(*loop_args, **loop_kwargs):
            loop = make_loop(*loop_args, **loop_kwargs)
            choose = loop._choose

            def gated_choose(events):
                if not self.gate.wait(60):
                    raise TimeoutError("gate never opened")
                self.yielded += 1
                return choose(events)

            loop._choose = gated_choose
            return loop

        self.engine.loop = gated_loop
