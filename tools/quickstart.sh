#!/usr/bin/env bash
# README command 1: create the environment if it is missing, generate a small
# synthetic detection / segmentation data set, train the baseline and C3
# variants with the real distributed launcher, evaluate them with the
# upstream metrics and print a table.
#
#   bash tools/quickstart.sh
#
# Environment variables:
#   GPUS                processes per run (default 2; CPU processes over gloo
#                       on a host without CUDA)
#   QUICKSTART_ONLY     run only variants whose name matches this regex
#   QUICKSTART_TRAIN    images per split and VOC year written (default 100)
#   PORT                first torchrun port (default 29500; one per run)
#
# Everything goes to work_dirs/quickstart/ (data/, one directory per variant
# with train.log, test.log and its checkpoint). Re-running retrains.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# The variants: name | config | metric printed by the test run.
# Add a row to compare another block or task.
VARIANTS=(
    "faster_rcnn_baseline|configs/quickstart/faster_rcnn_r50w16_baseline_voc0712_synthetic.py|pascal_voc/mAP"
    "faster_rcnn_c3|configs/quickstart/faster_rcnn_r50w16_c3_voc0712_synthetic.py|pascal_voc/mAP"
)

GPUS=${GPUS:-2}
ONLY=${QUICKSTART_ONLY:-.}
NUM_TRAIN=${QUICKSTART_TRAIN:-100}
PORT=${PORT:-29500}
OUT=work_dirs/quickstart   # the quickstart configs read $OUT/data

say() { echo "[quickstart $(date +%H:%M:%S)] $*" >&2; }

say "environment (created on the first run; see tools/setup_env.sh)"
VENV=$(bash "$ROOT/tools/setup_env.sh")
export PYTHON="$VENV/bin/python"
export PYTHONUNBUFFERED=1

say "generating synthetic shapes in $OUT/data"
rm -rf "$OUT/data"
"$PYTHON" tools/misc/generate_synthetic_data.py --out "$OUT/data" \
    --num-train "$NUM_TRAIN" --num-val $((NUM_TRAIN / 4)) \
    --size 160 128 --seed 0 >&2

# Print the training log's progress lines only; the full log is kept.
progress() {
    grep --line-buffered -E 'Iter\((train|val|test)\) \[|mAP|mIoU|Error|error:' \
        | sed -u 's/^/    /' >&2 || true
}

RUN_DIRS=()
for entry in "${VARIANTS[@]}"; do
    IFS='|' read -r NAME CONFIG METRIC <<< "$entry"
    [[ "$NAME" =~ $ONLY ]] || continue
    WORK="$OUT/$NAME"
    rm -rf "$WORK"
    mkdir -p "$WORK"
    say "$NAME: training $CONFIG on $GPUS processes (log: $WORK/train.log)"
    START=$(date +%s)
    # no validation while training: the test run below scores the checkpoint
    if ! PORT=$PORT bash tools/dist_train.sh "$CONFIG" "$GPUS" \
            --work-dir "$WORK" \
            --cfg-options val_cfg=None val_dataloader=None val_evaluator=None \
            2>&1 | tee "$WORK/train.log" | progress; then
        say "$NAME: training failed, see $WORK/train.log"
        exit 1
    fi
    SECONDS_TRAIN=$(( $(date +%s) - START ))
    PORT=$((PORT + 1))
    CHECKPOINT=$(cat "$WORK/last_checkpoint")
    say "$NAME: evaluating $CHECKPOINT (log: $WORK/test.log)"
    if ! PORT=$PORT bash tools/dist_test.sh "$CONFIG" "$CHECKPOINT" "$GPUS" \
            --work-dir "$WORK" 2>&1 | tee "$WORK/test.log" | progress; then
        say "$NAME: evaluation failed, see $WORK/test.log"
        exit 1
    fi
    PORT=$((PORT + 1))
    printf 'name=%s\nconfig=%s\nmetric=%s\ntrain_seconds=%s\ncheckpoint=%s\n' \
        "$NAME" "$CONFIG" "$METRIC" "$SECONDS_TRAIN" "$CHECKPOINT" > "$WORK/run.txt"
    RUN_DIRS+=("$WORK")
done

if [ ${#RUN_DIRS[@]} -eq 0 ]; then
    say "no variant matches QUICKSTART_ONLY=$ONLY"
    exit 2
fi
say "results (train time includes start-up; $GPUS processes)"
"$PYTHON" tools/misc/quickstart_table.py "${RUN_DIRS[@]}"
