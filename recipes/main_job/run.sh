#!/usr/bin/env bash
# The main job on the built-in offline data: the paper's whole pipeline at demo scale (the "demo" configs:
# configs/{kws,asr}/demo.yaml, configs/adversarial/sets/*_demo.yaml, configs/detector/*_demo.yaml), 24-28.5 minutes
# on 2 Zen 5 CPU cores with setup:
#   1. keyword-spotting victim: synthesise the keyword corpus, train, test on unseen voices
#   2. DeepSpeech victim: synthesise the sentence corpus, train, test on unseen voices and sentences
#   3. adversarial corpora: C&W on DeepSpeech, the genetic attack on the keyword spotter, PGD and C&W on the
#      keyword spotter (unknown attacks), and the noise controls
#   4. the detector grid (train on white-box / black-box / both, test on every condition, 3 seeds per feature
#      family) and its results table
#   5. noise flooding (no training: asks the victims about noisy copies of each test clip), alone and fused
#      with the grid's IMFCC detectors, with bootstrap intervals over the test clips
#   6. the adaptive attacker against one of the grid's detectors
# Every stage resumes where an interrupted run stopped, and logs to W&B (offline: runs/wandb for the victims, a wandb/
# folder in each stage's run folder for the others); its figures are also PNGs in its run folder, embedded in the
# closing report runs/demo-summary-$SCALE.md.
#   bash recipes/main_job/run.sh                # the whole pipeline
#   bash recipes/main_job/run.sh kws            # stage 1 only
#   SCALE=quick bash recipes/main_job/run.sh    # the same pipeline on the smaller quick configs (*_quick.yaml: victims
#                                       # trained half as long, a fifth of the black-box set, 3 feature families):
#                                       # 14-15 minutes on Zen 5, 25-28 on Zen 3, where the demo configs take an
#                                       # hour; its test sets are too small to settle the detector's goals
#   TRAINER=cpu bash recipes/main_job/run.sh    # victims on the CPU even where there is a GPU (the published figures'
#                                       # set-up); by default they train on one GPU in bf16 when there is one, as
#                                       # the attack, grid and noise-flooding stages already run there
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash scripts/setup.sh
source .venv/bin/activate
export WANDB_MODE=${WANDB_MODE:-offline}
# glibc gives large freed blocks back to the kernel and maps fresh, zeroed pages for the next one; with PyTorch's
# short-lived large tensors those page faults cost up to half of some CPU steps (docs/notebook.md, "The CPU
# allocator"). Blocks up to 1 GiB stay in the process instead. Same numbers, set before any process starts.
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-1073741824} MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-1073741824}
scale=${SCALE:-demo}
case $scale in quick | demo) ;; *) echo "SCALE must be quick or demo, got '$scale'" >&2; exit 2 ;; esac
only=${1:-all}
trainer=${TRAINER:-auto}
if [ "$trainer" = auto ]; then
  trainer=cpu
  python -c "import sys, torch; sys.exit(not torch.cuda.is_available())" && trainer=gpu
fi
case $trainer in
  cpu) trainer_args=(-c configs/trainer/cpu.yaml) ;;
  gpu) trainer_args=(-c configs/trainer/gpu.yaml --trainer.devices 1) ;;
  *) echo "TRAINER must be auto, cpu or gpu, got '$trainer'" >&2; exit 2 ;;
esac
mkdir -p runs
times=runs/demo-times.txt

stage() {  # stage NAME COMMAND...: run it and append its wall time to $times
  local name=$1 start=$SECONDS
  shift
  echo -e "\n=== [$scale: $name] $*"
  "$@"
  echo "$(date -u +%FT%TZ) $scale $name $((SECONDS - start)) s" >> "$times"
}

victim() {  # victim KIND: fit (resuming from last.ckpt) and test configs/KIND/$scale.yaml under runs/KIND-$scale
  local run=runs/$1-$scale resume=()
  local configs=(-c "configs/$1/$scale.yaml" "${trainer_args[@]}" -c configs/logger/wandb.yaml)
  [ -f "$run/checkpoints/last.ckpt" ] && resume=(--ckpt_path "$run/checkpoints/last.ckpt")
  lit-app fit "${configs[@]}" "${resume[@]}"
  lit-app test "${configs[@]}" --ckpt_path "$run/checkpoints/best.ckpt"
}

attack() {  # attack SET: build (or resume) configs/adversarial/sets/SET_$scale.yaml
  lit-app generate --data lit_app.advsets.datamodule.AdversarialDataModule \
    --data.train_sets "[configs/adversarial/sets/${1}_$scale.yaml]"
}

stage kws-victim victim kws
python recipes/main_job/report.py --scale "$scale" --victims "[kws]"
[ "$only" = kws ] && exit 0

stage asr-victim victim asr
for set in blackbox whitebox kws_pgd kws_cw_yes_right blackbox_noise whitebox_noise; do
  stage "attack:$set" attack "$set"
done
stage detector-grid lit-app grid -c "configs/detector/grid_$scale.yaml"
stage noise-flooding lit-app noise-flooding -c "configs/detector/noise_flooding_$scale.yaml"
stage adaptive-attack lit-app adaptive -c "configs/detector/adaptive_$scale.yaml"
python recipes/main_job/report.py --scale "$scale"
