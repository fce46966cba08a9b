#!/usr/bin/env bash
# Issue 12's recipe for the bundled adapters in src/moddecode/adapters/, on the bundled SmolLM2-135M-Instruct.
# Every step resumes where it stopped when run again.
#   bash scripts/train_bundled_adapters.sh            # needs .venv (bash scripts/setup.sh)
# NOT YET RUN TO THE END: the adapters shipped today come from the previous recipe (git show
# 106f984:scripts/train_bundled_adapters.sh, on the 120 prompts of data/prompts/train.jsonl at that commit;
# their moddecode.json holds that data's sha256). On 2 idle CPU cores the sampling alone is ~4 h (110 s per 16
# prompts) and a DPO step of batch 8 at 160 tokens ~20-40 s, so the recipe is a job for a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
A=src/moddecode/adapters
# 0. Training prompts: templates x topics, deduplicated against the held-out prompts.
.venv/bin/python scripts/make_train_prompts.py --heldout data/prompts/heldout.jsonl --out data/prompts/train.jsonl
# 1. Preference data: per prompt, 2 plain answers plus one under each objective's style prompt, sampled to EOS
#    (at most 192 tokens). An objective's pair is its best complete answer against its worst, among the plain
#    ones and its own style's. PREFS_ENGINE=vllm samples the same answers on the vLLM engine (.venv-vllm; for
#    GPUs: on 2 idle CPU cores 16 prompts took 110 s on transformers and 182 s on vLLM, engine start included).
if [ "${PREFS_ENGINE:-transformers}" = vllm ]; then
  sample=(env VLLM_LOGGING_LEVEL=WARNING .venv-vllm/bin/moddecode make-prefs --engine vllm
          --engine-option gpu_memory_utilization=0.2)
else
  sample=(.venv/bin/moddecode make-prefs)
fi
"${sample[@]}" data/prompts/train.jsonl -o runs/prefs --prompts-per-batch 32 \
  --scorer conciseness --scorer vader --scorer readability -k 2 -n 192 --temperature 0.8 --top-p 0.95 --seed 0 \
  --margin conciseness=0.1 --margin vader=0.2 --margin readability=10 \
  --style "conciseness=Answer in one short sentence." \
  --style "vader=You are a cheerful, optimistic assistant. Use warm, happy, positive words like great, wonderful, love, enjoy and fun." \
  --style "readability=Explain things simply: use short sentences and easy, everyday words, as if talking to a young child."
# 2. One reverse-KL adapter per objective.
M=.venv/bin/moddecode
common=(--max-steps "${STEPS:-60}" --lr 5e-4 --batch-size 8 --max-length 160 --beta 0.1 --lora-r 16 --lora-alpha 32)
$M train runs/prefs/conciseness.jsonl -o $A/concise --objective concise -d reverse_kl "${common[@]}"
$M train runs/prefs/vader.jsonl -o $A/positive --objective positive -d reverse_kl "${common[@]}"
$M train runs/prefs/readability.jsonl -o $A/readable --objective readable -d reverse_kl "${common[@]}"
# 3. The concise/positive pair again under JSD, alpha:0.5 and alpha:0.3.
for d in jsd alpha0.5 alpha0.3; do
  div=${d/alpha/alpha:}
  $M train runs/prefs/conciseness.jsonl -o $A/concise-$d --objective concise -d "$div" "${common[@]}"
  $M train runs/prefs/vader.jsonl -o $A/positive-$d --objective positive -d "$div" "${common[@]}"
done
# 4. The targets, on the held-out prompts.
.venv/bin/python scripts/eval_adapters.py --json docs/reproduction/adapters_eval.json
