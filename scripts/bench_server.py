"""Server under load, on the bundled SmolLM2 with its three bundled LoRA adapters: throughput,
latency and time to first token, on the transformers engine and on vLLM, measured in one run.

For each engine, starts the real server in this process (uvicorn on a free loopback port) over MOD of
the three bundled adapters (or --config FILE) and drives it with the official async `openai` client,
streaming. Every client sends --requests chat completions in a row, each with its own weighting,
greedy and with `ignore_eos`, so every answer is exactly --max-tokens tokens.

Printed:
  - per engine and concurrency level: completion tokens/s (and its ratio to 1 client), p50/p95
    latency, p50/p95 time to first token (TTFT); with both engines, vLLM / transformers per level;
  - with --details (transformers engine): a request arriving mid-batch (its TTFT next to one decode
    step, its own prefill and the running batch's duration) and the cost of one decode step against
    the number of rows, which bounds the tokens/s ratio.

vLLM needs its environment (`bash scripts/setup.sh --vllm`); the transformers engine runs there too:

    .venv-vllm/bin/python scripts/bench_server.py                      # both engines
    .venv/bin/python scripts/bench_server.py --engine transformers --details
    .venv-vllm/bin/python scripts/bench_server.py --engine vllm --clients 1,8,32 --requests 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

# vLLM's CPU worker: on a machine shared with other work, threads bound to cores and spinning at
# barriers wait for whatever else runs there (set before torch starts OpenMP).
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import httpx
import torch
from openai import AsyncOpenAI

from moddecode.adapters import DEMO_ADAPTERS, bundled_adapter
from moddecode.server import BackgroundServer, create_app
from moddecode.server.config import load_server_config

VLLM_OPTIONS = {"max_model_len": 1024, "kv_cache_memory_bytes": 2 * 2**30, "enforce_eager": True}


def default_set(engine: str) -> dict:
    """MOD over the three bundled LoRA adapters of SmolLM2 (no reference: weights on the simplex)."""
    return {"name": "bench", "divergence": "reverse_kl", "engine": engine,
            **({"engine_options": VLLM_OPTIONS} if engine == "vllm" else {}),
            "policies": [{"name": n, "source": "smollm2", "adapter": str(bundled_adapter(n))} for n in DEMO_ADAPTERS]}
PROMPTS = ["Why is the sky blue?", "How do I boil an egg?", "What is a prime number?", "Name a fast animal.",
           "What does a compiler do?", "Why do cats purr?", "How far is the Moon?", "What is photosynthesis?"]


def weights_for(client: int, request: int, m: int) -> list[float]:
    """A distinct weighting per request, on the simplex (no reference needed)."""
    raw = [1.0 + ((client * 7 + request * 3 + i * 5) % 11) for i in range(m)]
    return [r / sum(raw) for r in raw]


async def one_request(api: AsyncOpenAI, model: str, prompt: str, weights: list[float], max_tokens: int) -> dict:
    """Stream one chat completion; returns its latency, time to first token and token count."""
    started = time.perf_counter()
    first, tokens = None, 0
    stream = await api.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0,
        stream=True, stream_options={"include_usage": True}, extra_body={"weights": weights, "ignore_eos": True})
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return {"latency": time.perf_counter() - started, "ttft": first, "tokens": tokens}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_level(url: str, model: str, m: int, clients: int, requests: int, max_tokens: int) -> dict:
    api = AsyncOpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, timeout=3600)
    done: list[dict] = []

    async def client(c: int) -> None:
        for r in range(requests):
            done.append(await one_request(api, model, PROMPTS[(c + r) % len(PROMPTS)], weights_for(c, r, m),
                                          max_tokens))

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    wall = time.perf_counter() - started
    await api.close()
    tokens = sum(d["tokens"] for d in done)
    return {"clients": clients, "requests": len(done), "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
            "p50_latency": pct([d["latency"] for d in done], 0.5), "p95_latency": pct([d["latency"] for d in done], 0.95),
            "p50_ttft": pct([d["ttft"] for d in done], 0.5), "p95_ttft": pct([d["ttft"] for d in done], 0.95)}


async def mid_batch_arrival(url: str, model: str, m: int, batch: int, max_tokens: int) -> dict:
    """`batch` clients run a long batch; once all of them are decoding, one more request arrives."""
    api = AsyncOpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, timeout=3600)
    started = time.perf_counter()
    running = [asyncio.create_task(one_request(api, model, PROMPTS[c % len(PROMPTS)], weights_for(c, 0, m),
                                               max_tokens)) for c in range(batch)]
    async with httpx.AsyncClient() as http:  # wait until every row of the batch has joined (prefills done)
        while (await http.get(url + "/health")).json()["scheduler"]["running"] < batch:
            for task in running:
                if task.done():
                    task.result()  # a request that failed: raise its error instead of waiting forever
            await asyncio.sleep(0.05)
    admitted = time.perf_counter() - started
    await asyncio.sleep(0.5)
    late = await one_request(api, model, PROMPTS[3], weights_for(99, 0, m), 8)
    await asyncio.gather(*running)
    batch_s = time.perf_counter() - started
    await api.close()
    return {"late_ttft": late["ttft"], "batch_s": batch_s, "decoding_s": batch_s - admitted}


def step_costs(mod, rows_list: list[int], steps: int = 6) -> tuple[dict[int, float], float]:
    """Median seconds of one decode step of the engine's loop with `rows` rows (M policy rows each), and
    the extra cost of a step that admits one more row (its prefill and joining the KV cache)."""
    from moddecode import DecodingConfig
    from moddecode.decoding import RowSpec

    weights = torch.full((len(mod.policies),), 1.0 / len(mod.policies), dtype=torch.float64)
    config = DecodingConfig(ignore_eos=True, divergence="reverse_kl")

    def spec(i: int) -> RowSpec:
        return RowSpec(PROMPTS[i % len(PROMPTS)], weights, config, steps + 4, key=i)

    out, admit = {}, 0.0
    for rows in rows_list:
        loop = mod.engine.loop()
        loop.submit([spec(i) for i in range(rows)])
        loop.step()  # prefill and the first token, not timed
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            loop.step()
            times.append(time.perf_counter() - t0)
        out[rows] = statistics.median(times)
        if rows == 16:
            loop.submit([spec(3)])
            t0 = time.perf_counter()
            loop.step()
            admit = time.perf_counter() - t0 - out[rows]
    return out, admit


def bench_engine(engine: str, args, levels: list[int]) -> list[dict]:
    """Serve the policy set on `engine` and measure every concurrency level (and --details)."""
    t0 = time.perf_counter()
    mod, meta, _ = load_server_config(args.config or default_set(engine), engine=engine)
    m = len(mod.policies)
    app = create_app(mod, meta, max_tokens_limit=max(args.max_tokens, 96), max_queue=4096,
                     max_batch_size=args.max_batch_size, batch_window_ms=args.batch_window_ms)
    with BackgroundServer(app) as server:
        print(f"[{engine}] policy set {meta.name!r}: {m} policies {mod.names}, loaded and started in "
              f"{time.perf_counter() - t0:.1f} s; max_tokens={args.max_tokens}, requests/client={args.requests}, "
              f"torch threads={torch.get_num_threads()}", flush=True)
        asyncio.run(run_level(server.url, meta.name, m, 1, 1, 4))  # warm-up, not timed
        rows = []
        for c in levels:
            rows.append(asyncio.run(run_level(server.url, meta.name, m, c, args.requests, args.max_tokens)))
            print(f"[{engine}] {c} clients: {rows[-1]['tokens_per_s']:.1f} tokens/s", flush=True)
        late = asyncio.run(mid_batch_arrival(server.url, meta.name, m, 16, 96)) if args.details else None
    if late is not None and engine == "transformers":
        print_details(mod, m, late)
    return rows


def print_details(mod, m: int, late: dict) -> None:
    costs, admit = step_costs(mod, sorted({1, 8, 16, 32}))
    print("\ndecode step cost (engine, " + f"{m} policies per row): "
          + ", ".join(f"{n} rows {1000 * s:.0f} ms" for n, s in costs.items()))
    ideal = {n: n * costs[1] / s for n, s in costs.items()}
    print("tokens/s ceiling vs 1 row from step cost alone: "
          + ", ".join(f"{n} rows {x:.1f}x" for n, x in ideal.items()))
    step = costs[16]
    print(f"mid-batch arrival (16 clients x 96 tokens decoding, one more arrives): TTFT {late['late_ttft']:.2f} s = "
          f"{late['late_ttft'] / step:.1f} steps of {step:.2f} s; its own prefill and join {admit:.2f} s, so "
          f"{(late['late_ttft'] - admit) / step:.1f} steps besides (target <= 2); the running batch decoded for "
          f"{late['decoding_s']:.1f} s (TTFT = {late['late_ttft'] / late['decoding_s']:.0%} of it)\n")


def print_table(results: dict[str, list[dict]]) -> None:
    header = (f"{'engine':>12} {'clients':>7} {'requests':>8} {'tokens':>7} {'wall s':>7} {'tokens/s':>8} {'vs 1':>6} "
              f"{'p50 lat s':>9} {'p95 lat s':>9} {'p50 TTFT s':>10} {'p95 TTFT s':>10}")
    print(header)
    print("-" * len(header))
    for engine, rows in results.items():
        base = rows[0]["tokens_per_s"]
        for r in rows:
            print(f"{engine:>12} {r['clients']:>7} {r['requests']:>8} {r['tokens']:>7} {r['wall_s']:>7.1f} "
                  f"{r['tokens_per_s']:>8.1f} {r['tokens_per_s'] / base:>5.1f}x {r['p50_latency']:>9.2f} "
                  f"{r['p95_latency']:>9.2f} {r['p50_ttft']:>10.2f} {r['p95_ttft']:>10.2f}")
    if len(results) == 2:
        hf, vl = results["transformers"], results["vllm"]
        print("vLLM / transformers tokens/s: " + ", ".join(
            f"{a['clients']} clients {b['tokens_per_s'] / a['tokens_per_s']:.2f}x" for a, b in zip(hf, vl)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["transformers", "vllm", "both"], default="both")
    parser.add_argument("--config", help="policy-set YAML (default: the three bundled adapters of smollm2)")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=2, help="requests per client at each level")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-window-ms", type=float, default=10.0)
    parser.add_argument("--details", action="store_true",
                        help="also a mid-batch arrival and the decode step cost (transformers engine)")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    engines = ["transformers", "vllm"] if args.engine == "both" else [args.engine]
    print(f"{os.cpu_count()} CPUs; python {sys.executable}", flush=True)
    results = {engine: bench_engine(engine, args, levels) for engine in engines}
    print_table(results)


if __name__ == "__main__":
    main()
