"""The engine's speed table: for each model and batch, onnxruntime on the dense model, sparse24 on the dense
model, and sparse24 on the 2:4-pruned model, all in this run on this machine, with the same threads.

    .venv/bin/python scripts/bench_engine.py [--threads 2] [--json build/bench_engine.json] [--only minilm]

Models: all-MiniLM-L6-v2 (batch 1 and 8, seq 128), an MLP and a CNN for 28x28 images (batch 1 and 64).
Ratios: sparse24 2:4 / onnxruntime dense (target <= 0.75) and sparse24 dense / onnxruntime dense (<= 1.15).
Each figure is the median over --rounds alternating rounds of the three measurements.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import compare_ort  # noqa: E402
import models  # noqa: E402


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def sparse24_bench(binary, model, batch, seq, threads, sparsity):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([binary, "bench", model, "--batch", str(batch), "--seq", str(seq), "--threads", str(threads),
                        "--sparsity", sparsity, "--json", f.name], check=True, capture_output=True)
        return json.load(open(f.name))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=os.path.join(ROOT, "build", "bench_engine.json"))
    ap.add_argument("--sparse24", default=os.path.join(ROOT, "build", "sparse24"))
    ap.add_argument("--only", default=None, help="run only the models whose name contains this")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the three measurements")
    ap.add_argument("--seconds", type=float, default=1.0, help="onnxruntime timing per round")
    a = ap.parse_args()

    work = os.path.join(ROOT, "build", "bench_models")
    os.makedirs(work, exist_ok=True)
    builders = {
        "minilm": lambda: models.to_onnx.build(models.to_onnx.default_model_dir()),
        "mlp": lambda: models.mlp(sizes=(784, 1024, 1024, 10)),
        "cnn": lambda: models.cnn(channels=1, size=28, width=64),
    }
    cases = [("minilm", 1, 128), ("minilm", 8, 128), ("mlp", 1, 1), ("mlp", 64, 1), ("cnn", 1, 1), ("cnn", 64, 1)]
    rows = []
    for name, batch, seq in cases:
        if a.only and a.only not in name:
            continue
        dense = os.path.join(work, f"{name}.onnx")
        pruned = os.path.join(work, f"{name}_24.onnx")
        if not os.path.exists(dense):
            onnx.save(builders[name](), dense)
        if not os.path.exists(pruned):
            subprocess.run([a.sparse24, "prune", dense, "-o", pruned], check=True, capture_output=True)
        # The three are measured in alternating rounds and each figure is the median over the rounds, so a
        # change in the machine's state (this VM's second vCPU comes and goes) hits all three alike.
        ort_runs, dense_runs, sparse_runs = [], [], []
        feeds = compare_ort.make_inputs(onnx.load(dense), batch, seq)
        for _ in range(a.rounds):
            ort_runs.append(compare_ort.ort_latency(dense, feeds, a.threads, seconds=a.seconds)[0])
            s_dense = sparse24_bench(a.sparse24, dense, batch, seq, a.threads, "disable")
            s_24 = sparse24_bench(a.sparse24, pruned, batch, seq, a.threads, "enable")
            dense_runs.append(s_dense["median_ms"])
            sparse_runs.append(s_24["median_ms"])
        ort_ms, dense_ms, sparse_ms = (float(np.median(x)) for x in (ort_runs, dense_runs, sparse_runs))
        row = {"model": name, "batch": batch, "seq": seq, "threads": a.threads, "ort_dense_ms": ort_ms,
               "sparse24_dense_ms": dense_ms, "sparse24_24_ms": sparse_ms, "rounds": a.rounds,
               "ort_rounds_ms": ort_runs, "sparse24_dense_rounds_ms": dense_runs, "sparse24_24_rounds_ms": sparse_runs,
               "dense_vs_ort": dense_ms / ort_ms, "sparse_vs_ort": sparse_ms / ort_ms,
               "layers_on_24": sum(1 for l in s_24["layers"] if l["tactic"] == "2:4"),
               "linear_layers": sum(1 for l in s_24["layers"] if l["tactic"] != "-")}
        rows.append(row)
        print(f"{name:7s} batch {batch:3d} seq {seq:3d}: onnxruntime {ort_ms:8.3f} ms | sparse24 dense "
              f"{row['sparse24_dense_ms']:8.3f} ms ({row['dense_vs_ort']:.2f}x) | sparse24 2:4 "
              f"{row['sparse24_24_ms']:8.3f} ms ({row['sparse_vs_ort']:.2f}x, {row['layers_on_24']}/"
              f"{row['linear_layers']} layers on 2:4)", flush=True)
    out = {"cpu": cpu_model(), "threads": a.threads, "onnxruntime": ort.__version__, "rows": rows}
    with open(a.json + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(a.json + ".tmp", a.json)
    print(f"\n| model | batch | seq | onnxruntime dense ms | sparse24 dense ms | ratio | sparse24 2:4 ms | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['seq']} | {r['ort_dense_ms']:.3f} | {r['sparse24_dense_ms']:.3f} | "
              f"{r['dense_vs_ort']:.2f}x | {r['sparse24_24_ms']:.3f} | {r['sparse_vs_ort']:.2f}x |")
    print(f"\n{out['cpu']}, {a.threads} threads, onnxruntime {ort.__version__}; JSON: {a.json}")


if __name__ == "__main__":
    main()
