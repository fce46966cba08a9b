"""A sweep's work: every row to produce (`Job`), grouped into generate calls (`Batch`)."""

from __future__ import annotations

from dataclasses import dataclass

from .config import SweepConfig
from .layout import SINGLE_PREFIX


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
