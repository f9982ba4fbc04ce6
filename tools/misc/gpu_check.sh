#!/usr/bin/env bash
# On a machine with a GPU, check in one command what the CPU-only CI cannot:
#   bash tools/misc/gpu_check.sh
# 1. the CUDA tests (every block and both message-passing paths against the
#    CPU, CUDA random states), 2. the message-passing and block benchmarks on
#    the GPU, 3. a few training iterations of configs/faster_rcnn_r101_c3.py
#    on one GPU (generated COCO data, no pretrained weights), then a summary.
# On a machine without CUDA it says so and exits 0. Uses the environment of
# tools/setup_env.sh (PYTHON overrides it). Output goes to
# ${GPU_CHECK_OUT:-work_dirs/gpu_check}.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
if [ -z "${PYTHON:-}" ]; then
    PYTHON="$(bash tools/setup_env.sh)/bin/python" || exit 1
fi
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False): nothing to check"
    exit 0
fi
OUT=${GPU_CHECK_OUT:-work_dirs/gpu_check}
mkdir -p "$OUT"
declare -A status
run() {  # run NAME CMD...: log to $OUT/NAME.log, remember pass/fail
    local name=$1; shift
    echo "[gpu_check] $name: $*"
    if "$@" > "$OUT/$name.log" 2>&1; then status[$name]=ok; else status[$name]="FAILED (see $OUT/$name.log)"; fi
    tail -n 3 "$OUT/$name.log"
}
run cuda_tests "$PYTHON" -m pytest -q tests/models/blocks/test_cuda.py tests/utils/test_resume.py -rs
run message_benchmark "$PYTHON" tools/analysis_tools/benchmark_message_passing.py \
    --device cuda --shapes 128x2048x49 2x2048x1681 --repeat 3
run block_benchmark "$PYTHON" tools/analysis_tools/benchmark_blocks.py \
    --device cuda --shapes roi7 deeplab --repeats 3
"$PYTHON" tools/misc/generate_synthetic_data.py --out "$OUT/data" --formats coco \
    --num-train 16 --num-val 4 --size 320 256 --seed 0 > "$OUT/data.log" 2>&1
DATA="$OUT/data/coco/"
run train_c3_one_gpu "$PYTHON" tools/train.py configs/faster_rcnn_r101_c3.py \
    --work-dir "$OUT/train" --cfg-options \
    train_dataloader.dataset.data_root="$DATA" \
    train_dataloader.dataset.ann_file=annotations/instances_train.json \
    train_dataloader.dataset.data_prefix.img=train/ \
    train_dataloader.num_workers=2 train_dataloader.persistent_workers=False \
    model.backbone.init_cfg=None model.roi_head.shared_head.init_cfg=None \
    train_cfg.max_epochs=1 val_dataloader=None val_evaluator=None val_cfg=None \
    test_dataloader=None test_evaluator=None test_cfg=None \
    default_hooks.logger.interval=1
echo "[gpu_check] summary"
failed=0
for name in cuda_tests message_benchmark block_benchmark train_c3_one_gpu; do
    echo "  $name: ${status[$name]}"
    [ "${status[$name]}" = ok ] || failed=1
done
exit $failed
