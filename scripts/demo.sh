#!/usr/bin/env bash
# The main job on the built-in offline data, the paper's pipeline at demo scale:
#   1. keyword-spotting victim: synthesise the keyword corpus, train, test on unseen voices
#   2. DeepSpeech victim: synthesise the sentence corpus, train, test on unseen voices and sentences
#   3. adversarial corpora: C&W on DeepSpeech, the genetic attack on the keyword spotter, PGD and C&W on the
#      keyword spotter (unknown attacks), and the noise controls
#   4. the detector grid (train on white-box / black-box / both, test on every condition, 5 feature families,
#      3 seeds) and its results table
#   5. noise flooding (no training: asks the victims about noisy copies of each test clip), alone and fused
#      with the grid's IMFCC detectors
#   6. the adaptive attacker against one of the grid's detectors
# Every stage resumes where an interrupted run stopped. `bash scripts/demo.sh kws` runs stage 1 only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
source .venv/bin/activate
export WANDB_MODE=${WANDB_MODE:-offline}
only=${1:-all}
mkdir -p runs
times=runs/demo-times.txt

stage() {  # stage NAME COMMAND...: run it and append its wall time to $times
  local name=$1 start=$SECONDS
  shift
  echo -e "\n=== [$name] $*"
  "$@"
  echo "$(date -u +%FT%TZ) $name $((SECONDS - start)) s" >> "$times"
}

victim() {  # victim NAME CONFIG...: fit (resuming from last.ckpt) and test a victim under runs/NAME
  local run=runs/$1 resume=()
  shift
  local configs=() config
  for config in "$@" configs/trainer/cpu.yaml configs/logger/wandb.yaml; do configs+=(-c "$config"); done
  [ -f "$run/checkpoints/last.ckpt" ] && resume=(--ckpt_path "$run/checkpoints/last.ckpt")
  lit-app fit "${configs[@]}" "${resume[@]}"
  lit-app test "${configs[@]}" --ckpt_path "$run/checkpoints/best.ckpt"
}

stage kws-victim victim kws-demo configs/kws/demo.yaml
python -m lit_app.experiments.demo_summary kws
[ "$only" = kws ] && exit 0

stage asr-victim victim asr-demo configs/asr/demo.yaml
for config in configs/adversarial/blackbox_demo.yaml configs/adversarial/whitebox_demo.yaml \
              configs/detector/sources/kws_pgd_demo.yaml configs/detector/sources/kws_cw_demo.yaml \
              configs/detector/sources/blackbox_noise_demo.yaml configs/detector/sources/whitebox_noise_demo.yaml; do
  stage "attack:$(basename "$config" .yaml)" python -m lit_app.data.adversarial_generate -c "$config"
done
stage detector-grid python -m lit_app.experiments.grid -c configs/detector/grid_demo.yaml
stage noise-flooding python -m lit_app.experiments.noise_flooding -c configs/detector/noise_flooding_demo.yaml
stage adaptive-attack python -m lit_app.experiments.adaptive -c configs/detector/adaptive_demo.yaml
python -m lit_app.experiments.demo_summary
