"""A faster CPU linear layer for decode steps of a few rows (MKL's small-batch sgemm is slow)."""

from __future__ import annotations

import contextlib
import os

import torch
from torch.overrides import TorchFunctionMode

SMALL_BATCH_MAX_ROWS = 8


class SmallBatchLinear(TorchFunctionMode):
    """Compute F.linear on a few input rows as (W @ x^T)^T.

    On CPU, MKL's sgemm runs x @ W^T with 2-8 rows about as slowly as that many separate products,
    while W @ x^T with the same numbers is as fast as one row (SmolLM2-135M decode step, 2 cores:
    1 row 41 ms; 3 rows 85 ms plain, 40 ms through this mode). Used only around our CPU forwards of
    at most SMALL_BATCH_MAX_ROWS rows; $MODDECODE_CPU_SMALL_BATCH=0 turns it off.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.linear:
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            flat = x.reshape(-1, x.shape[-1])
            if flat.shape[0] > SMALL_BATCH_MAX_ROWS:  # e.g. a prefill: the usual kernel is right there
                return func(*args, **kwargs)
            out = torch.matmul(weight, flat.T).T
            if bias is not None:
                out = out + bias
            return out.reshape(*x.shape[:-1], weight.shape[0])
        return func(*args, **kwargs)


def small_batch_enabled() -> bool:
    """$MODDECODE_CPU_SMALL_BATCH=0 turns the mode off (read when an engine is built, not per forward)."""
    return os.environ.get("MODDECODE_CPU_SMALL_BATCH") != "0"


def small_batch_mode(device: torch.device, rows: int, enabled: bool = True):
    """SmallBatchLinear where it pays (CPU, 2..SMALL_BATCH_MAX_ROWS rows), else a no-op context."""
    if enabled and device.type == "cpu" and 1 < rows <= SMALL_BATCH_MAX_ROWS:
        return SmallBatchLinear()
    return contextlib.nullcontext()
