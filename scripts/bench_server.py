"""Server throughput: completion tokens/s at 1, 8 and 32 concurrent clients, on the bundled SmolLM2.

Starts the real server in this process (uvicorn on a free loopback port) over a policy set of three
prompted objectives of "smollm2" (or --config FILE), and drives it with the official async `openai`
client. Every client sends --requests chat completions in a row, each with its own weighting, greedy
and with `ignore_eos`, so every answer is exactly --max-tokens tokens and levels are comparable.

    python scripts/bench_server.py --max-tokens 32
    python scripts/bench_server.py --config examples/server.yaml --clients 1,4,16
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
from openai import AsyncOpenAI

from moddecode.server import BackgroundServer, create_app
from moddecode.server.config import load_server_config

SYSTEM = {
    "helpful": "You are a helpful assistant. Give accurate, complete and useful answers.",
    "concise": "You are a terse assistant. Answer in one short sentence, with no preamble.",
    "humorous": "You are a witty assistant. Answer with a joke or a playful, funny tone.",
}
DEFAULT_SET = {"name": "bench", "divergence": "reverse_kl",
               "policies": [{"name": n, "source": "smollm2", "system_prompt": s} for n, s in SYSTEM.items()]}
PROMPTS = ["Why is the sky blue?", "How do I boil an egg?", "What is a prime number?", "Name a fast animal.",
           "What does a compiler do?", "Why do cats purr?", "How far is the Moon?", "What is photosynthesis?"]


def weights_for(client: int, request: int, m: int) -> list[float]:
    """A distinct weighting per request, on the simplex (no reference needed)."""
    raw = [1.0 + ((client * 7 + request * 3 + i * 5) % 11) for i in range(m)]
    return [r / sum(raw) for r in raw]


async def run_level(url: str, model: str, m: int, clients: int, requests: int, max_tokens: int) -> dict:
    api = AsyncOpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, timeout=3600)
    latencies, tokens = [], 0

    async def client(c: int) -> None:
        nonlocal tokens
        for r in range(requests):
            started = time.perf_counter()
            reply = await api.chat.completions.create(
                model=model, messages=[{"role": "user", "content": PROMPTS[(c + r) % len(PROMPTS)]}],
                max_tokens=max_tokens, temperature=0,
                extra_body={"weights": weights_for(c, r, m), "ignore_eos": True})
            latencies.append(time.perf_counter() - started)
            tokens += reply.usage.completion_tokens

    before = httpx.get(url + "/health").json()["batcher"]
    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    wall = time.perf_counter() - started
    after = httpx.get(url + "/health").json()["batcher"]
    await api.close()
    batches = after["batches"] - before["batches"]
    return {"clients": clients, "requests": clients * requests, "tokens": tokens, "wall_s": wall,
            "tokens_per_s": tokens / wall, "mean_batch": (after["rows"] - before["rows"]) / max(batches, 1),
            "p50_latency_s": statistics.median(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="policy-set YAML (default: three prompted objectives of smollm2)")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated concurrency levels")
    parser.add_argument("--requests", type=int, default=2, help="requests per client at each level")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-window-ms", type=float, default=10.0)
    args = parser.parse_args()

    t0 = time.perf_counter()
    mod, meta, _ = load_server_config(args.config or DEFAULT_SET)
    device = mod.policies[0].base.device
    print(f"policy set {meta.name!r}: {len(mod.policies)} policies {mod.names} on {device}, "
          f"loaded in {time.perf_counter() - t0:.1f} s; max_tokens={args.max_tokens}, "
          f"requests/client={args.requests}")
    app = create_app(mod, meta=meta, max_tokens_limit=max(args.max_tokens, 1), max_queue=4096,
                     max_batch_size=args.max_batch_size, batch_window_ms=args.batch_window_ms)
    levels = [int(c) for c in args.clients.split(",")]
    with BackgroundServer(app) as server:
        # Warm-up (first forward passes allocate), not timed.
        asyncio.run(run_level(server.url, meta.name, len(mod.policies), 1, 1, 4))
        rows = [asyncio.run(run_level(server.url, meta.name, len(mod.policies), c, args.requests, args.max_tokens))
                for c in levels]
    header = (f"{'clients':>7} {'requests':>8} {'tokens':>7} {'wall s':>8} {'tokens/s':>9} {'mean batch':>10} "
              f"{'p50 latency s':>13}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['clients']:>7} {r['requests']:>8} {r['tokens']:>7} {r['wall_s']:>8.2f} {r['tokens_per_s']:>9.1f} "
              f"{r['mean_batch']:>10.1f} {r['p50_latency_s']:>13.2f}")


if __name__ == "__main__":
    main()
