"""onnxruntime and sparse24 on the same model and the same inputs, in the same run: both latencies, their
ratio, and the largest difference between their outputs.

    .venv/bin/python tools/compare_ort.py MODEL.onnx [--batch B] [--seq S] [--threads T] [--sparsity MODE]
                                          [--sparse24 build/sparse24] [--json FILE]

Inputs are made like `sparse24 bench` makes them (symbolic dims: batch first, seq for the rest; floats in
[0, 1); integer inputs 1), saved as .npy, and fed to both. Latency of onnxruntime: median of timed runs in
this process; of sparse24: `sparse24 bench` (median, same inputs' shapes).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

NP_TYPES = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT32: np.int32,
            onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.INT8: np.int8, onnx.TensorProto.BOOL: np.bool_}


def make_inputs(model, batch, seq, seed=0):
    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (batch if i == 0 else seq)
                 for i, d in enumerate(tt.shape.dim)]
        dtype = NP_TYPES[tt.elem_type]
        feeds[vi.name] = (rng.random(shape).astype(dtype) if np.issubdtype(dtype, np.floating)
                          else np.ones(shape, dtype=dtype))
    return feeds


def ort_latency(sess, feeds, seconds=2.0, min_runs=10):
    for _ in range(3):
        sess.run(None, feeds)
    times, start = [], time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), len(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--sparsity", default="enable", choices=["disable", "enable", "force"])
    ap.add_argument("--sparse24", default=os.path.join(os.path.dirname(__file__), "..", "build", "sparse24"))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    model = onnx.load(a.model)
    feeds = make_inputs(model, a.batch, a.seq)
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    ort_out = sess.run(None, feeds)
    ort_ms, ort_runs = ort_latency(sess, feeds)

    with tempfile.TemporaryDirectory() as tmp:
        args = []
        for name, arr in feeds.items():
            np.save(os.path.join(tmp, name + ".npy"), arr)
            args += ["--input", f"{name}={os.path.join(tmp, name + '.npy')}"]
        common = ["--threads", str(a.threads), "--sparsity", a.sparsity, "--batch", str(a.batch), "--seq", str(a.seq)]
        subprocess.run([a.sparse24, "run", a.model, *args, "-o", os.path.join(tmp, "out"), *common], check=True,
                       capture_output=True)
        s24_out = [np.load(os.path.join(tmp, "out", o.name + ".npy")) for o in model.graph.output]
        bench_json = os.path.join(tmp, "bench.json")
        subprocess.run([a.sparse24, "bench", a.model, *common, "--json", bench_json], check=True, capture_output=True)
        bench = json.load(open(bench_json))

    max_err = max(float(np.abs(s - o).max()) for s, o in zip(s24_out, ort_out))
    max_rel = max(float(np.abs(s - o).max() / max(np.abs(o).max(), 1e-30)) for s, o in zip(s24_out, ort_out))
    row = {"model": a.model, "batch": a.batch, "seq": a.seq, "threads": a.threads, "sparsity": a.sparsity,
           "ort_ms": ort_ms, "ort_runs": ort_runs, "sparse24_ms": bench["median_ms"],
           "sparse24_dense_ms": bench["dense"]["median_ms"], "ratio_vs_ort": bench["median_ms"] / ort_ms,
           "dense_ratio_vs_ort": bench["dense"]["median_ms"] / ort_ms, "max_abs_err": max_err,
           "max_rel_err": max_rel, "onnxruntime": ort.__version__}
    print(f"{os.path.basename(a.model)}  batch {a.batch} seq {a.seq} threads {a.threads}")
    print(f"  onnxruntime {ort.__version__:>8}: {ort_ms:8.3f} ms (median of {ort_runs})")
    print(f"  sparse24 dense      : {bench['dense']['median_ms']:8.3f} ms  = {row['dense_ratio_vs_ort']:.2f}x onnxruntime")
    print(f"  sparse24 planned    : {bench['median_ms']:8.3f} ms  = {row['ratio_vs_ort']:.2f}x onnxruntime "
          f"(sparsity {a.sparsity})")
    print(f"  max |difference| of outputs: {max_err:.3g} (relative {max_rel:.3g})")
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump(row, f, indent=1)
        os.replace(a.json + ".tmp", a.json)
    return row


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
