#!/usr/bin/env bash
# The exact commands that produced the adapters in src/moddecode/adapters/ (issue 4), on the bundled
# SmolLM2-135M-Instruct, CPU only. ~6 min for the preference data, ~5-10 min per adapter on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
M=.venv/bin/moddecode
A=src/moddecode/adapters
# 1. Preference data: 4 sampled responses per training prompt, scored by four offline scorers.
$M make-prefs data/prompts/train.jsonl -o runs/prefs --scorer conciseness --scorer vader --scorer readability \
   --scorer length -k 4 -n 64 --seed 0
# 2. One reverse-KL adapter per objective.
common=(--epochs 2 --lr 5e-4 --batch-size 8 --max-length 192 --beta 0.1)
$M train runs/prefs/conciseness.jsonl -o $A/concise --objective concise -d reverse_kl "${common[@]}"
$M train runs/prefs/vader.jsonl -o $A/positive --objective positive -d reverse_kl "${common[@]}"
$M train runs/prefs/readability.jsonl -o $A/readable --objective readable -d reverse_kl "${common[@]}"
# 3. The concise/positive pair again under JSD and alpha:0.5.
$M train runs/prefs/conciseness.jsonl -o $A/concise-jsd --objective concise -d jsd "${common[@]}"
$M train runs/prefs/vader.jsonl -o $A/positive-jsd --objective positive -d jsd "${common[@]}"
$M train runs/prefs/conciseness.jsonl -o $A/concise-alpha0.5 --objective concise -d alpha:0.5 "${common[@]}"
$M train runs/prefs/vader.jsonl -o $A/positive-alpha0.5 --objective positive -d alpha:0.5 "${common[@]}"
