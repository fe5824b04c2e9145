"""onnxruntime and sparse24 on the same model and the same inputs, in the same run: both latencies, their
ratio, and the largest difference between their outputs.

    .venv/bin/python tools/compare_ort.py MODEL.onnx [--batch B] [--seq S] [--threads T] [--sparsity MODE]
                                          [--sparse24 build/sparse24] [--json FILE]

Inputs are made like `sparse24 bench` makes them (symbolic dims: batch first, seq for the rest; floats in
[0, 1); integer inputs 1), saved as .npy, and fed to both. The latencies come from --rounds alternating
rounds, each figure the median over the rounds: in a round, onnxruntime's median over --seconds of timed
runs in this process (its session then closed), and `sparse24 bench` (the planned and the all-dense model,
medians, same inputs' shapes). Alternating, a change in the machine's speed between the two measurements
(this project's VMs swing by 2x) hits both alike instead of one.
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


def ort_session(model_path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])


def ort_latency(model_path, feeds, threads, seconds=2.0, min_runs=10):
    """Median ms and number of timed runs of onnxruntime on the model. The session is closed before this
    returns: an idle onnxruntime thread pool left alive spins on the cores and slows whatever runs next."""
    sess = ort_session(model_path, threads)
    for _ in range(3):
        sess.run(None, feeds)
    times, start = [], time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    del sess
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
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the two measurements")
    ap.add_argument("--seconds", type=float, default=1.0, help="onnxruntime timing per round")
    a = ap.parse_args()
    if a.rounds < 1 or a.seconds <= 0:
        sys.exit("compare_ort.py: --rounds must be at least 1 and --seconds positive")

    model = onnx.load(a.model)
    feeds = make_inputs(model, a.batch, a.seq)
    sess = ort_session(a.model, a.threads)
    ort_out = sess.run(None, feeds)
    del sess

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
        ort_rounds, ort_runs, planned_rounds, dense_rounds = [], 0, [], []
        for _ in range(a.rounds):
            ms, runs = ort_latency(a.model, feeds, a.threads, a.seconds)
            ort_rounds.append(ms)
            ort_runs += runs
            subprocess.run([a.sparse24, "bench", a.model, *common, "--json", bench_json], check=True,
                           capture_output=True)
            bench = json.load(open(bench_json))
            planned_rounds.append(bench["median_ms"])
            dense_rounds.append(bench["dense"]["median_ms"])
    ort_ms, planned_ms, dense_ms = (statistics.median(r) for r in (ort_rounds, planned_rounds, dense_rounds))

    max_err = max(float(np.abs(s - o).max()) for s, o in zip(s24_out, ort_out))
    max_rel = max(float(np.abs(s - o).max() / max(np.abs(o).max(), 1e-30)) for s, o in zip(s24_out, ort_out))
    row = {"model": a.model, "batch": a.batch, "seq": a.seq, "threads": a.threads, "sparsity": a.sparsity,
           "ort_ms": ort_ms, "ort_runs": ort_runs, "sparse24_ms": planned_ms, "sparse24_dense_ms": dense_ms,
           "ratio_vs_ort": planned_ms / ort_ms, "dense_ratio_vs_ort": dense_ms / ort_ms, "max_abs_err": max_err,
           "max_rel_err": max_rel, "onnxruntime": ort.__version__, "rounds": a.rounds,
           "ort_rounds_ms": ort_rounds, "sparse24_rounds_ms": planned_rounds,
           "sparse24_dense_rounds_ms": dense_rounds}
    spread = lambda r: f"{min(r):.3f}-{max(r):.3f}"  # noqa: E731
    print(f"{os.path.basename(a.model)}  batch {a.batch} seq {a.seq} threads {a.threads}, "
          f"median of {a.rounds} alternating rounds (their range in brackets)")
    print(f"  onnxruntime {ort.__version__:>8}: {ort_ms:8.3f} ms ({spread(ort_rounds)}; {ort_runs} runs)")
    print(f"  sparse24 dense      : {dense_ms:8.3f} ms ({spread(dense_rounds)})  = {row['dense_ratio_vs_ort']:.2f}x "
          "onnxruntime")
    print(f"  sparse24 planned    : {planned_ms:8.3f} ms ({spread(planned_rounds)})  = {row['ratio_vs_ort']:.2f}x "
          f"onnxruntime (sparsity {a.sparsity})")
    print(f"  max |difference| of outputs: {max_err:.3g} (relative {max_rel:.3g})")
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump(row, f, indent=1)
        os.replace(a.json + ".tmp", a.json)
    return row


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
