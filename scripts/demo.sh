#!/usr/bin/env bash
# The whole sparse24 workflow on Fashion-MNIST with the CNN: train a dense model, check it, prune it to 2:4,
# evaluate the one-shot 2:4 model, retrain it with the masks fixed (ASP), build the inference plan, then
# evaluate and benchmark. Prints the table and leaves everything in <build>/demo/ (dense.onnx, pruned.onnx,
# finetuned.onnx, finetuned.plan, report.json and the JSON of every step).
#
# Environment: SEED (default 0), EPOCHS / FINETUNE_EPOCHS (default 4 / 2, the recipe of docs/accuracy.md), TRAIN_THREADS (default 1: on a
# shared machine one training thread is the steady choice; 0 uses every core), BENCH_BATCH (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/sparse24
demo=$build/demo
seed=${SEED:-0}
epochs=${EPOCHS:-4}
finetune_epochs=${FINETUNE_EPOCHS:-2}
threads=${TRAIN_THREADS:-1}
batch=${BENCH_BATCH:-1}
mkdir -p "$demo"
rm -f "$demo"/*.onnx "$demo"/*.plan "$demo"/*.json
start=$(date +%s)

echo "== 1. sparse24 train: the CNN on Fashion-MNIST's 60,000 training images ($epochs epochs, seed $seed)"
"$bin" train --arch cnn --seed "$seed" --epochs "$epochs" --threads "$threads" -o "$demo/dense.onnx" \
  --json "$demo/train.json"

echo; echo "== 2. sparse24 check: which layers can be 2:4"
"$bin" check "$demo/dense.onnx"

echo; echo "== 3. sparse24 prune: magnitude 2:4, one shot"
"$bin" prune "$demo/dense.onnx" -o "$demo/pruned.onnx" --json "$demo/prune.json"

echo; echo "== 4. sparse24 eval: dense and one-shot 2:4 on the 10,000 test images"
"$bin" eval "$demo/dense.onnx" --json "$demo/eval_dense.json"
"$bin" eval "$demo/pruned.onnx" --json "$demo/eval_pruned.json"

echo; echo "== 5. sparse24 finetune: retrain with the 2:4 masks fixed ($finetune_epochs epochs)"
"$bin" finetune "$demo/pruned.onnx" --seed "$seed" --epochs "$finetune_epochs" --threads "$threads" \
  -o "$demo/finetuned.onnx" --json "$demo/finetune.json"
"$bin" check "$demo/finetuned.onnx" --json "$demo/check.json"

echo; echo "== 6. sparse24 build: the plan (2:4 kernels where they are faster on this machine)"
"$bin" build "$demo/finetuned.onnx" -o "$demo/finetuned.plan" --batch "$batch"

echo; echo "== 7. sparse24 eval and bench: the plan's accuracy, dense vs 2:4 latency at batch $batch"
"$bin" eval "$demo/finetuned.plan" --json "$demo/eval_finetuned.json"
"$bin" bench "$demo/finetuned.plan" --batch "$batch" --json "$demo/bench.json"

echo; echo "== 8. the retrained model is standard ONNX: onnxruntime on the same test images"
.venv/bin/python scripts/eval_ort.py "$demo/finetuned.onnx" > "$demo/eval_onnxruntime.json"
cat "$demo/eval_onnxruntime.json"

echo; echo "== 9. latency against onnxruntime at batch $batch, alternating rounds in one run (tools/compare_ort.py)"
.venv/bin/python tools/compare_ort.py "$demo/finetuned.onnx" --batch "$batch" --sparse24 "$bin" \
  --json "$demo/compare_onnxruntime.json"

echo; echo "== the result (seed $seed, $(($(date +%s) - start)) s)"
.venv/bin/python - "$demo" "$seed" "$(($(date +%s) - start))" <<'PY'
import json
import os
import sys

demo, seed, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
load = lambda name: json.load(open(os.path.join(demo, name)))
bench, check, ort = load("bench.json"), load("check.json")["totals"], load("compare_onnxruntime.json")
report = {
    "model": "cnn",
    "seed": seed,
    "dense_accuracy": load("eval_dense.json")["accuracy"],
    "one_shot_24_accuracy": load("eval_pruned.json")["accuracy"],
    "retrained_24_accuracy": load("eval_finetuned.json")["accuracy"],
    "retrained_24_accuracy_onnxruntime": load("eval_onnxruntime.json")["accuracy"],
    "batch": bench["batch"],
    "dense_latency_ms": bench["dense"]["median_ms"],
    "sparse_latency_ms": bench["planned"]["median_ms"],
    "speedup": bench["speedup"],
    # step 9: onnxruntime and sparse24 (its own plan of the same model) timed in one run
    "onnxruntime_latency_ms": ort["ort_ms"],
    "sparse_vs_onnxruntime": ort["ratio_vs_ort"],
    "dense_vs_onnxruntime": ort["dense_ratio_vs_ort"],
    "dense_weight_bytes": check["eligible_dense_bytes"],
    "compressed_weight_bytes": check["compressed_bytes"],
    # The same weights compressed in f32: half the values plus a 4-bit index pair per group of 4.
    "compressed_weight_bytes_f32": check["eligible_params"] // 2 * 4 + check["eligible_params"] // 8,
    "dense_onnx_bytes": os.path.getsize(os.path.join(demo, "dense.onnx")),
    "plan_bytes": os.path.getsize(os.path.join(demo, "finetuned.plan")),
    "train_epochs": len(load("train.json")["epochs"]),
    "finetune_epochs": len(load("finetune.json")["epochs"]),
    "seconds": seconds,
}
with open(os.path.join(demo, "report.json.tmp"), "w") as f:
    json.dump(report, f, indent=2)
os.replace(os.path.join(demo, "report.json.tmp"), os.path.join(demo, "report.json"))
kib = lambda b: f"{b / 1024:.1f} KiB"
rows = [("model", "cnn (Fashion-MNIST, seed %d)" % seed),
        ("dense accuracy", f"{100 * report['dense_accuracy']:.2f}%"),
        ("2:4 one-shot accuracy", f"{100 * report['one_shot_24_accuracy']:.2f}%"),
        ("2:4 retrained accuracy", f"{100 * report['retrained_24_accuracy']:.2f}% "
                                   f"(onnxruntime {100 * report['retrained_24_accuracy_onnxruntime']:.2f}%)"),
        (f"dense latency (batch {report['batch']})", f"{report['dense_latency_ms']:.3f} ms"),
        (f"2:4 latency (batch {report['batch']})", f"{report['sparse_latency_ms']:.3f} ms"),
        ("speedup", f"{report['speedup']:.2f}x"),
        (f"onnxruntime latency (batch {report['batch']})",
         f"{report['onnxruntime_latency_ms']:.3f} ms (sparse24 2:4 {report['sparse_vs_onnxruntime']:.2f}x, "
         f"dense {report['dense_vs_onnxruntime']:.2f}x of it in the same run)"),
        ("dense size (eligible weights, f32)", kib(report["dense_weight_bytes"])),
        ("compressed size (2:4 values + metadata)", f"{kib(report['compressed_weight_bytes'])} as f16, "
                                                    f"{kib(report['compressed_weight_bytes_f32'])} as f32"),
        ("files", f"dense.onnx {kib(report['dense_onnx_bytes'])}, finetuned.plan {kib(report['plan_bytes'])}")]
width = max(len(k) for k, _ in rows)
for k, v in rows:
    print(f"{k:<{width}}  {v}")
print(f"report: {os.path.join(demo, 'report.json')}")
PY
