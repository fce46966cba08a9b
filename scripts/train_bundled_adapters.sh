#!/usr/bin/env bash
# Issue 12's recipe for the bundled adapters in src/moddecode/adapters/, on the bundled SmolLM2-135M-Instruct.
# Every step resumes where it stopped when run again.
#   bash scripts/train_bundled_adapters.sh            # needs .venv (bash scripts/setup.sh)
# This is what made the shipped adapters on 2026-11-27. On 2 CPU cores: sampling 2000 prompts x 5 answers took
# about 3.5 h (10-13 prompts/min); a DPO run of 16 steps 5-6 min, of 32 steps 10 min, of 48 steps 16 min; the
# eval of step 3 9 min. The three positive variants of step 4 and step 5's check ran on a lent H200 (the same
# commands; about 40 s per adapter with three training at once, and 6 min for the check).
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
"${sample[@]}" data/prompts/train.jsonl --limit "${PROMPTS:-2000}" -o runs/prefs --prompts-per-batch 32 \
  --scorer conciseness --scorer vader --scorer readability -k 2 -n 192 --temperature 0.8 --top-p 0.95 --seed 0 \
  --margin conciseness=0.1 --margin vader=0.1 --margin readability=10 \
  --style "conciseness=Answer in one short sentence." \
  --style "vader=You are a cheerful, optimistic assistant. Use warm, happy, positive words like great, wonderful, love, enjoy and fun." \
  --style "readability=Explain things simply: use short sentences and easy, everyday words, as if talking to a young child."
# 2. One reverse-KL adapter per objective. The positive pairs differ in tone at nearly equal length (81 vs 87
#    words), a weaker signal than length or word choice: on the first 320 prompts' pairs, 32 steps at 1e-3 moved
#    held-out VADER by only +0.146 (target +0.15), so the positive adapter gets 48 steps at 1e-3 (384 of its 734
#    pairs, none seen twice), and so do its JSD/alpha variants (at 32 steps they moved VADER only +0.02 to +0.07
#    on 40 held-out prompts). Readable gets 32 steps at 5e-4: at 16 its loss was still falling and noisy, and
#    held-out Flesch moved +15.1 (target +15); at 32, +16.9 at the same fluency.
M=.venv/bin/moddecode
common=(--batch-size 8 --max-length 160 --beta 0.1 --lora-r 8 --lora-alpha 16)
short=(--max-steps 16 --lr 5e-4)
medium=(--max-steps 32 --lr 5e-4)
longest=(--max-steps 48 --lr 1e-3)
$M train runs/prefs/conciseness.jsonl -o $A/concise --objective concise -d reverse_kl "${common[@]}" "${short[@]}"
$M train runs/prefs/vader.jsonl -o $A/positive --objective positive -d reverse_kl "${common[@]}" "${longest[@]}"
$M train runs/prefs/readability.jsonl -o $A/readable --objective readable -d reverse_kl "${common[@]}" "${medium[@]}"
# 3. Issue 12's targets, on the held-out prompts.
.venv/bin/python scripts/eval_adapters.py --adapters concise positive readable --json docs/reproduction/adapters_eval.json
# 4. The concise/positive pair again under JSD, alpha:0.5 and alpha:0.3.
for d in jsd alpha0.5 alpha0.3; do
  div=${d/alpha/alpha:}
  $M train runs/prefs/conciseness.jsonl -o $A/concise-$d --objective concise -d "$div" "${common[@]}" "${short[@]}"
  $M train runs/prefs/vader.jsonl -o $A/positive-$d --objective positive -d "$div" "${common[@]}" "${longest[@]}"
done
# 5. Do the variants steer too? A quicker check on the first 40 held-out prompts (no targets for them).
.venv/bin/python scripts/eval_adapters.py --limit 40 --json docs/reproduction/variants_eval.json \
  --adapters concise-jsd positive-jsd concise-alpha0.5 positive-alpha0.5 concise-alpha0.3 positive-alpha0.3
