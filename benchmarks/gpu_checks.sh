#!/usr/bin/env bash
# The GPU measurements the issues ask for, as one bounded script for a short lease on a GPU machine.
#
#   bash benchmarks/gpu_checks.sh wheels    # here, once: the pure-Python/cp312 wheels the GPU image lacks, into .whl/
#   bash benchmarks/gpu_checks.sh run       # there: installs .whl/ into /tmp/site, runs each check with a time cap
#
# The GPU image (Python 3.12, torch 2.11.0+cu130, torchaudio, pytorch-lightning 2.6, torchmetrics, numpy, yaml)
# lacks jsonargparse, its docstring/typeshed helpers, soundfile and cffi; the benchmarks need nothing else
# (wandb, espeakng-loader and flashlight-text are imported lazily). Every check runs under `timeout`, so one
# slow check cannot eat the others' time; logs and JSON results go to $OUT (or runs/gpu_checks) to be
# copied into benchmarks/RESULTS.md with the device name and date each benchmark prints.
# Caps add up to about 8.5 minutes: run it with a 600 s limit.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WHEELS=(jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.15.0 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12)

wheels() {
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${WHEELS[@]}"
    ls .whl
}

check() {  # check NAME SECONDS COMMAND...: one benchmark, capped, its output in NAME.log
    local name=$1 cap=$2
    shift 2
    echo "== $name (cap ${cap}s): $*"
    local start=$SECONDS
    timeout --kill-after=10 "$cap" env PYTHONUNBUFFERED=1 "$@" 2>&1 | tee "$out/$name.log"
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s"
}

run() {
    out=${OUT:-runs/gpu_checks}
    mkdir -p "$out"
    if [[ -d .whl ]]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
        export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    else
        export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    fi
    {
        date -u
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
        python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    } | tee "$out/machine.txt"
    local device=${DEVICE:-cuda}
    # 6: the DGC goal (top-k selection against the full DeepSpeech backward) and the comm model's inputs
    check dgc_selection 60 python3 benchmarks/dgc_selection.py --device "$device"
    check dgc_compression 150 python3 benchmarks/dgc_compression.py --device "$device" --out "$out/compression-$device.json"
    check dgc_comm_model 20 python3 benchmarks/dgc_comm_model.py --input "$out/compression-$device.json"
    # 3: training throughput of both DeepSpeech sizes, fp32 and bf16
    check deepspeech_fp32 60 python3 benchmarks/deepspeech_throughput.py --device "$device"
    check deepspeech_bf16 60 python3 benchmarks/deepspeech_throughput.py --device "$device" --precision bf16-mixed
    # 4: attack loops against the victims' bare costs (demo-size victims, then the paper-size DeepSpeech)
    check attacks 90 python3 benchmarks/attack_throughput.py --device "$device" \
        --cw_batch_sizes '[1,8,32,128]' --genetic_batch_sizes '[4,32,128]'
    check attacks_full 40 python3 benchmarks/attack_throughput.py --device "$device" --full true \
        --cw_batch_sizes '[8,32]' --genetic_batch_sizes '[]'
    # 2 and 5: victim and detector throughput
    check kws 30 python3 benchmarks/kws_throughput.py --device "$device" --batch_sizes '[128,1280]'
    check detector 30 python3 benchmarks/detector_throughput.py --device "$device" --batch_sizes '[64,256]'
}

case "${1:-}" in
    wheels) wheels ;;
    run) run ;;
    *) echo "usage: bash benchmarks/gpu_checks.sh wheels|run" >&2; exit 2 ;;
esac
