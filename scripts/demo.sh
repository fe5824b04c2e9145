#!/usr/bin/env bash
# The sparse24 workflow on a small CNN: check the dense model, prune it to 2:4, check the result, and
# confirm with onnxruntime that the pruned model still runs. Leaves its files in <build>/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/sparse24
demo=$build/demo
mkdir -p "$demo"

echo "== 1. a dense model: $demo/dense.onnx"
.venv/bin/python scripts/make_demo_model.py "$demo/dense.onnx"

echo; echo "== 2. sparse24 check (before)"
"$bin" check "$demo/dense.onnx"

echo; echo "== 3. sparse24 prune (magnitude 2:4)"
"$bin" prune "$demo/dense.onnx" -o "$demo/pruned.onnx" --json "$demo/prune.json"

echo; echo "== 4. sparse24 check (after)"
"$bin" check "$demo/pruned.onnx" --json "$demo/check.json"

echo; echo "== 5. the pruned model is standard ONNX: onnxruntime runs it"
.venv/bin/python - "$demo/dense.onnx" "$demo/pruned.onnx" <<'PY'
import sys
import numpy as np
import onnxruntime as ort
x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
dense, pruned = (ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, {"pixels": x})[0]
                 for p in sys.argv[1:3])
print(f"onnxruntime: dense and pruned logits for 4 images, shape {pruned.shape}; "
      f"relative change from pruning {np.linalg.norm(pruned - dense) / np.linalg.norm(dense):.3f} "
      "(random weights: retraining comes with `sparse24 finetune`)")
PY
