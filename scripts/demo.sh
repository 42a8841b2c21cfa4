#!/usr/bin/env bash
# The main job on the built-in offline data: synthesise the small keyword corpus, train the keyword-spotting
# victim, test it on voices it never heard, and print the accuracy. Rerunning resumes an interrupted run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source .venv/bin/activate
export WANDB_MODE=${WANDB_MODE:-offline}

configs=(-c configs/kws/demo.yaml -c configs/trainer/cpu.yaml -c configs/logger/wandb.yaml)
run=runs/kws-demo
resume=()
[ -f "$run/checkpoints/last.ckpt" ] && resume=(--ckpt_path "$run/checkpoints/last.ckpt")

lit-app fit "${configs[@]}" "${resume[@]}"
lit-app test "${configs[@]}" --ckpt_path "$run/checkpoints/best.ckpt"

python - "$run/results.json" <<'PY'
import json, sys
metrics = json.load(open(sys.argv[1]))["metrics"]
print(f"\nKWS victim: test accuracy on unseen voices = {metrics['test/acc']:.2%}"
      f"  (checkpoint runs/kws-demo/checkpoints/best.ckpt; W&B offline run under runs/wandb)")
PY
