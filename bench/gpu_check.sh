#!/usr/bin/env bash
# The training-speed checks of one short GPU session (docs/gpu.md), in one go:
#   1. compute-only throughput (bench/train_throughput.py: img/s, FLOPs per image, TFLOP/s, MFU) of the published
#      layout in fp16-mixed and bf16-mixed, NCHW and channels_last, and of the ADM layout in fp16-mixed, NCHW,
#      compiled unless COMPILE=false (each row compiles anew: about a minute);
#   2. pretrain.py fit's real loop with configs/pretrain.yaml on the shared faces at SIZE px for STEPS steps, in
#      16-mixed and bf16-mixed with the compiled network (the Throughput callback prints img/s at the end);
#   3. quality is not traded for speed: the same QSTEPS-step run at QSIZE px in plain fp32 (eager) and on the fast
#      path (bf16-mixed, compiled), each validated at its last step (val/psnr, val/ssim in OUT/quality_*.txt).
# Usage, on the GPU machine:   bash bench/gpu_check.sh          (results under ${OUT:-gpu_check}/)
# A dry run of the same commands on the CPU, small:
#   ACCEL=cpu SIZE=32 STEPS=3 BATCH=2 ITERS=1 WORKERS=0 COMPILE=false QSIZE=32 QSTEPS=2 bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-gpu_check}
ACCEL=${ACCEL:-gpu}
SIZE=${SIZE:-256}
STEPS=${STEPS:-300}
BATCH=${BATCH:-16}
ITERS=${ITERS:-30}
WORKERS=${WORKERS:-8}
COMPILE=${COMPILE:-true}
QSIZE=${QSIZE:-128}
QSTEPS=${QSTEPS:-600}
DATA=../shared/data/anime_faces_128
export HF_HUB_OFFLINE=1
mkdir -p "$OUT"
device=$([ "$ACCEL" = gpu ] && echo cuda || echo cpu)
compile_flag=$([ "$COMPILE" = true ] && echo --compile || true)

# 1. compute only (and with loader workers)
bench() {
  $PY bench/train_throughput.py --devices "$device" --sizes "$SIZE" --batch-size "$BATCH" --iterations "$ITERS" \
      --warmup $((ITERS / 5 + 1)) --num-workers "$WORKERS" $compile_flag "$@"
}
bench --precisions mixed bf16 --channels-last off on --layouts published | tee "$OUT/bench_published.txt"
bench --precisions mixed --channels-last off --layouts adm | tee "$OUT/bench_adm.txt"

fit() {  # fit NAME PRECISION COMPILE SIZE STEPS [extra options]
  local name=$1 precision=$2 compile=$3 size=$4 steps=$5
  shift 5
  $PY pretrain.py fit --config configs/pretrain.yaml --data.root "$DATA/train" --data.test_root "$DATA/test" \
      --trainer.accelerator "$ACCEL" --trainer.devices 1 --trainer.strategy auto --trainer.precision "$precision" \
      --trainer.max_steps "$steps" --data.size "$size" --data.batch_size "$BATCH" --data.num_workers "$WORKERS" \
      --model.compile "$compile" --trainer.default_root_dir "$OUT/$name" \
      --trainer.logger.init_args.save_dir "$OUT/$name" \
      "$@" 2>&1 | tee "$OUT/$name.log" | grep -E "throughput:|Error|error:" || true
}

# 2. the real loop (no validation within STEPS steps at this batch size: check_val_every_n_epoch is 5)
for precision in 16-mixed bf16-mixed; do
  fit "loop_$precision" "$precision" "$COMPILE" "$SIZE" "$STEPS"
done

# 3. equal images, plain against fast, validated once at the end
for run in "fp32:32-true:false" "fast:bf16-mixed:$COMPILE"; do
  IFS=: read -r name precision compile <<< "$run"
  fit "quality_$name" "$precision" "$compile" "$QSIZE" "$QSTEPS" --trainer.check_val_every_n_epoch null \
      --trainer.val_check_interval "$QSTEPS" --seed_everything 0
  $PY - "$OUT/quality_$name" <<'EOF' | tee "$OUT/quality_$name.txt"
import glob, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
for f in sorted(glob.glob(sys.argv[1] + "/**/events*", recursive=True)):
    acc = EventAccumulator(f)
    acc.Reload()
    for tag in ("val/psnr", "val/ssim", "train/img_per_s"):
        if tag in acc.Tags()["scalars"]:
            last = acc.Scalars(tag)[-1]
            print(f"{sys.argv[1]}: {tag} {last.value:.4f} at step {last.step}")
EOF
done
