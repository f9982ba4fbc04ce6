#!/usr/bin/env bash
# README command 1: create the environment if it is missing, generate a small
# synthetic VOC-format dataset, train the baseline and C3 variants of the
# shrunk Faster R-CNN R-101 C4 detector with the real distributed launcher
# (2 processes: gloo on a CPU, nccl on GPUs), the same for the shrunk
# DeepLab-v2 baseline and C3 segmenters and the CIFAR ResNet-20 baseline, C3
# and SE classifiers on scikit-learn's real handwritten digits, evaluate each
# checkpoint with the upstream metrics (VOC mAP, mIoU, top-1 accuracy) and
# print a table (variant, metric, train time, params).
#
#   bash tools/quickstart.sh
#
# Environment variables:
#   QUICKSTART_GPUS   processes per run (default 2)
#   QUICKSTART_ITERS  training iterations per variant (default: the configs')
#   QUICKSTART_OUT    output directory (default work_dirs/quickstart)
#   PORT              torchrun master port (default 29500)
# Everything is written under QUICKSTART_OUT: data/ (the configs find it
# through MMC3_QUICKSTART_DATA), <variant>/ (training: logs, checkpoints),
# <variant>/test/ (evaluation), table.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# One row per variant: name, config, metric printed by the evaluator.
# Adding a variant (e.g. a segmentation row) is one more line.
VARIANTS=(
    "baseline configs/quickstart/faster_rcnn_r50w16_baseline_voc0712_synthetic.py pascal_voc/mAP"
    "c3       configs/quickstart/faster_rcnn_r50w16_c3_voc0712_synthetic.py       pascal_voc/mAP"
    "seg_baseline configs/quickstart/deeplabv2_r50w8_baseline_voc12_synthetic.py  mIoU"
    "seg_c3       configs/quickstart/deeplabv2_r50w8_c3_voc12_synthetic.py        mIoU"
    "cls_baseline configs/quickstart/resnet20_baseline_digits.py                  accuracy/top1"
    "cls_c3       configs/quickstart/resnet20_c3_digits.py                        accuracy/top1"
    "cls_se       configs/quickstart/resnet20_se_digits.py                        accuracy/top1"
)

GPUS=${QUICKSTART_GPUS:-2}
OUT=${QUICKSTART_OUT:-work_dirs/quickstart}
say() { echo "[quickstart $(date +%H:%M:%S)] $*"; }

VENV=$(bash "$ROOT/tools/setup_env.sh")
export PYTHON="$VENV/bin/python"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export PYTHONUNBUFFERED=1

# the data lives under QUICKSTART_OUT; the configs read it from
# MMC3_QUICKSTART_DATA (mmengine substitutes {{$VAR:default}} in configs)
DATA=$OUT/data
export MMC3_QUICKSTART_DATA=$DATA
if [ ! -f "$DATA/VOCdevkit/VOC2007/ImageSets/Main/test.txt" ]; then
    say "generating the synthetic dataset in $DATA"
    "$PYTHON" tools/misc/generate_synthetic_data.py --out "$DATA" \
        --num-train 200 --num-val 50 --size 160 128 --seed 0 --formats voc
fi

if [ ! -d "$DATA/digits/test" ]; then
    say "writing scikit-learn's digits as an image folder in $DATA/digits"
    "$PYTHON" tools/misc/prepare_digits.py --out "$DATA/digits"
fi

extra=()
if [ -n "${QUICKSTART_ITERS:-}" ]; then
    extra=(train_cfg.max_iters="$QUICKSTART_ITERS"
           default_hooks.checkpoint.interval="$QUICKSTART_ITERS")
fi

rows=()
for row in "${VARIANTS[@]}"; do
    read -r name config metric <<<"$row"
    work="$OUT/$name"
    mkdir -p "$work"
    say "training $name: tools/dist_train.sh $config $GPUS (log: $work/train.log)"
    start=$(date +%s)
    # evaluation happens once, below, with dist_test.sh: no validation loop
    # while training (mmengine validates at the last iteration whatever
    # val_interval says, so the loop itself is removed)
    bash tools/dist_train.sh "$config" "$GPUS" --work-dir "$work" \
        --cfg-options val_dataloader=None val_evaluator=None val_cfg=None \
        "${extra[@]}" \
        2>&1 | tee "$work/train.log" | grep --line-buffered -E 'Iter\(train\)|Error|error:' || true
    seconds=$(( $(date +%s) - start ))
    ckpt=$(cat "$work/last_checkpoint" 2>/dev/null || true)
    if [ -z "$ckpt" ] || [ ! -f "$ckpt" ]; then
        say "training $name failed: see $work/train.log"; tail -n 30 "$work/train.log"; exit 1
    fi
    say "$name trained in ${seconds}s; evaluating $ckpt (log: $work/test.log)"
    bash tools/dist_test.sh "$config" "$ckpt" "$GPUS" --work-dir "$work/test" \
        2>&1 | tee "$work/test.log" | grep --line-buffered -E 'Iter\(test\) \[[0-9]+/[0-9]+\] .*(mAP|mIoU|accuracy)|Error|error:' || true
    rows+=("$name" "$config" "$metric" "$work/test" "$seconds")
done

"$PYTHON" tools/misc/quickstart_table.py --out "$OUT/table.md" "${rows[@]}"
