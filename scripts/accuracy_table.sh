#!/usr/bin/env bash
# The accuracy table of docs/accuracy.md: for each architecture and seed, train a dense model on
# Fashion-MNIST, prune it to 2:4 (one shot), retrain it with the masks fixed (ASP), and evaluate all three on
# the 10,000 test images with sparse24 eval (the engine), plus the retrained ONNX with onnxruntime. Then
# writes docs/accuracy.md and docs/accuracy.json from the runs.
#
#   scripts/accuracy_table.sh                  # everything (mlp and cnn, seeds 0 1 2), then the report
#   ARCHS=cnn SEEDS="0 1" scripts/accuracy_table.sh --no-report   # a part (run parts side by side)
#   scripts/accuracy_table.sh --report-only    # the report from the runs already in $OUT
#
# Environment: SPARSE24 (default build/sparse24), OUT (default build/accuracy), THREADS (default 0: every
# core; on a busy machine 1 per run is faster), ARCHS, SEEDS, NOTE (a line for the report: where it ran).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SPARSE24:-build/sparse24}
out=${OUT:-build/accuracy}
archs=${ARCHS:-"mlp cnn"}
seeds=${SEEDS:-"0 1 2"}
threads=${THREADS:-0}
mode=${1:-all}

# The recipes: dense training, then retraining of the pruned model (mlp: the dense recipe again, as ASP does;
# cnn: half the epochs at a fifth of the peak rate).
declare -A train_args=([mlp]="--epochs 10 --lr 0.05" [cnn]="--epochs 4 --lr 0.05")
declare -A finetune_args=([mlp]="--epochs 10 --lr 0.05" [cnn]="--epochs 2 --lr 0.01")

if [ "$mode" != --report-only ]; then
  for arch in $archs; do
    for seed in $seeds; do
      d=$out/$arch-seed$seed
      mkdir -p "$d"
      echo "== $arch, seed $seed -> $d"
      # shellcheck disable=SC2086
      "$bin" train --arch "$arch" --seed "$seed" ${train_args[$arch]} --threads "$threads" \
        -o "$d/dense.onnx" --json "$d/train.json"
      "$bin" prune "$d/dense.onnx" -o "$d/pruned.onnx" --json "$d/prune.json" >/dev/null
      # shellcheck disable=SC2086
      "$bin" finetune "$d/pruned.onnx" --seed "$seed" ${finetune_args[$arch]} --threads "$threads" \
        -o "$d/finetuned.onnx" --json "$d/finetune.json"
      for m in dense pruned finetuned; do
        "$bin" eval "$d/$m.onnx" --threads "$threads" --json "$d/eval_$m.json"
      done
      .venv/bin/python scripts/eval_ort.py "$d/finetuned.onnx" > "$d/ort_finetuned.json"
      cat "$d/ort_finetuned.json"
    done
  done
fi

if [ "$mode" != --no-report ]; then
  .venv/bin/python scripts/accuracy_report.py "$out" docs/accuracy.md docs/accuracy.json \
    "mlp: \`train ${train_args[mlp]}\`, then \`finetune ${finetune_args[mlp]}\`" \
    "cnn: \`train ${train_args[cnn]}\`, then \`finetune ${finetune_args[cnn]}\`" ${NOTE:+"$NOTE"}
fi
