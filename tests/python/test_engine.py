"""The engine against onnxruntime: an MLP, a CNN and a 2-layer transformer, each pruned to 2:4, run dense,
with 2:4 forced and as planned, from .onnx and from a .plan; MiniLM against sentence-transformers' embeddings."""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import models

DATA = os.path.join(os.path.dirname(__file__), "..", "data")


def pruned(sparse24, tmp_path, model, name):
    dense = tmp_path / f"{name}.onnx"
    onnx.save(model, str(dense))
    out = tmp_path / f"{name}_24.onnx"
    sparse24("prune", dense, "-o", out)
    return out


def run_engine(sparse24, tmp_path, model_path, feeds, *extra):
    args = []
    for k, v in feeds.items():
        np.save(tmp_path / f"in_{k}.npy", v)
        args += ["--input", f"{k}={tmp_path / f'in_{k}.npy'}"]
    out = tmp_path / "out"
    sparse24("run", model_path, *args, "-o", out, *extra)
    return {p[:-4]: np.load(out / p) for p in os.listdir(out)}


def ort_outputs(model_path, feeds):
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def assert_close(got, want, rtol=1e-4):
    for name, w in want.items():
        g = got[name]
        assert g.shape == w.shape and g.dtype == w.dtype, name
        scale = max(float(np.abs(w).max()), 1e-6)
        err = float(np.abs(g - w).max()) / scale
        assert err <= rtol, f"{name}: max error {err:.3g} relative to max |value|"


rng = np.random.default_rng(7)
CASES = {
    "mlp": (models.mlp, lambda b: {"pixels": rng.random((b, 784), dtype=np.float32)}),
    # Clip(0, 6) and Clip(0) as the layers' ReLU6 and ReLU epilogues; inputs large enough to pass 6
    "mlp_clip": (lambda: models.mlp(clip=True), lambda b: {"pixels": 16 * rng.random((b, 784), dtype=np.float32)}),
    "cnn": (models.cnn, lambda b: {"pixels": rng.random((b, 4, 16, 16), dtype=np.float32)}),
    # one input channel: the stem's K is 9, short enough for the direct kernel and its fused MaxPool
    "cnn_gray": (lambda: models.cnn(channels=1), lambda b: {"pixels": rng.random((b, 1, 16, 16), dtype=np.float32)}),
    # ReLU6 (Clip(0, 6)) after the convolutions: the stem's fuses with its MaxPool all the same
    "cnn_relu6": (lambda: models.cnn(channels=1, relu6=True),
                  lambda b: {"pixels": 8 * rng.random((b, 1, 16, 16), dtype=np.float32)}),
    # the GlobalAveragePool is the graph's output, read channels-last all the same
    "features": (models.conv_features, lambda b: {"pixels": rng.random((b, 3, 12, 12), dtype=np.float32)}),
    # ResNet's stem: a 3-channel image into pixels, a 7x7 stride-2 convolution, a padded 3x3 stride-2 MaxPool
    # run channels-last on its own
    "resnet_stem": (lambda: models.conv_features(resnet_stem=True, width=32, size=40),
                    lambda b: {"pixels": rng.random((b, 3, 40, 40), dtype=np.float32)}),
    # a channel Concat of two convolution branches and an AveragePool, inside the channels-last section
    "branches": (models.conv_branches, lambda b: {"pixels": rng.random((b, 3, 12, 12), dtype=np.float32)}),
    # MobileNetV2's block: the depthwise convolution and the residual Add stay channels-last
    "mobilenet": (models.inverted_residual, lambda b: {"pixels": rng.random((b, 16, 14, 14), dtype=np.float32)}),
    # ... with ReLU6 as Clip(0, 6), also channels-last
    "mobilenet_relu6": (lambda: models.inverted_residual(relu6=True),
                        lambda b: {"pixels": 4 * rng.random((b, 16, 14, 14), dtype=np.float32)}),
    "transformer": (models.transformer, lambda b: {
        "input_ids": rng.integers(1, 100, (b, 12)).astype(np.int64),
        "attention_mask": np.concatenate([np.ones((b, 9), np.int64), (rng.random((b, 3)) < 0.5).astype(np.int64)], 1)}),
}


@pytest.mark.parametrize("sparsity", ["disable", "force", "enable"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_onnxruntime(sparse24, tmp_path, case, sparsity):
    make, feeds_for = CASES[case]
    model_path = pruned(sparse24, tmp_path, make(), case)
    # CNNs also at batch 32: whole blocks of 16 (AVX-512) or 8 (AVX2) images per thread, where the 2:4
    # convolution runs as image blocks and sums its GlobalAveragePool as it stores.
    for batch in (1, 3, 32) if case.startswith(("cnn", "mobilenet")) or case in ("features", "branches") else (1, 3):
        feeds = feeds_for(batch)
        got = run_engine(sparse24, tmp_path, model_path, feeds, "--sparsity", sparsity, "--batch", str(batch),
                         "--seq", "12")
        assert_close(got, ort_outputs(model_path, feeds))


@pytest.mark.parametrize("case", list(CASES))
def test_plan_file_runs_like_the_model(sparse24, tmp_path, case):
    make, feeds_for = CASES[case]
    model_path = pruned(sparse24, tmp_path, make(), case)
    plan = tmp_path / f"{case}.plan"
    p = sparse24("build", model_path, "-o", plan, "--sparsity", "force", "--batch", "2", "--seq", "12")
    assert "2:4" in p.stdout
    if case == "transformer":  # both layers' attention runs as one FusedAttention node each
        assert "2 attention blocks fused" in p.stdout, p.stdout
        assert "5 Add+LayerNormalization fused" in p.stdout, p.stdout  # embeddings, then 2 per layer
    if case.startswith("cnn"):  # stem and both block convolutions run channels-last
        assert "3 convolutions channels-last" in p.stdout, p.stdout
        assert "1 residual Adds fused" in p.stdout, p.stdout  # the block's skip Add and its Relu
        # the stem and its MaxPool are one node (on the direct kernel where its K is at most 32)
        assert "1 Conv+MaxPool fused" in p.stdout, p.stdout
        assert "1 Conv+GlobalAveragePool fused" in p.stdout, p.stdout  # the block's last convolution
    if case == "mlp_clip":  # both Clips fused into their Gemms
        assert "graph: 3 nodes" in p.stdout, p.stdout
    if case.startswith("mobilenet"):
        # the input's Transpose, expand (+ its ReLU, or its Clip(0, 6) as a ReLU6 epilogue), depthwise (+ its
        # ReLU or Clip), project (+ residual + pool)
        assert "graph: 4 nodes" in p.stdout, p.stdout
        assert "1 residual Adds fused" in p.stdout, p.stdout
    if case == "branches":  # the Concat and the AveragePool stay channels-last: 4 convolutions, 1 transpose
        assert "4 convolutions channels-last" in p.stdout, p.stdout
        # the input's Transpose, 4 convolutions (the last with the pool), Concat, AveragePool, Flatten, Gemm
        assert "graph: 9 nodes" in p.stdout, p.stdout
        assert "1 Conv+GlobalAveragePool fused" in p.stdout, p.stdout
    if case in ("features", "resnet_stem"):  # the output GlobalAveragePool reads channels-last
        assert "2 convolutions channels-last" in p.stdout, p.stdout
        assert "1 Conv+GlobalAveragePool fused" in p.stdout, p.stdout
        # ResNet's padded 3x3 MaxPool runs channels-last as a node of its own
        assert f"{int(case == 'features')} Conv+MaxPool fused" in p.stdout, p.stdout
    # f32 2:4 weights are stored compressed: values half, metadata 1/32 of their dense bytes (47% saved).
    dense_plan = tmp_path / f"{case}_dense.plan"
    sparse24("build", model_path, "-o", dense_plan, "--sparsity", "disable", "--batch", "2", "--seq", "12")
    sparse24("check", model_path, "--json", tmp_path / "check.json")
    eligible = json.loads((tmp_path / "check.json").read_text())["totals"]["eligible_dense_bytes"]
    assert plan.stat().st_size <= dense_plan.stat().st_size - 0.46 * eligible, "2:4 weights not compressed"
    feeds = feeds_for(2)
    assert_close(run_engine(sparse24, tmp_path, plan, feeds), ort_outputs(model_path, feeds))


def test_minilm_embeddings_match_sentence_transformers(sparse24, tmp_path):
    fixture = np.load(os.path.join(DATA, "minilm_fixture.npz"))
    model_path = tmp_path / "minilm.onnx"
    onnx.save(models.to_onnx.build(models.to_onnx.default_model_dir()), str(model_path))
    feeds = {"input_ids": fixture["input_ids"], "attention_mask": fixture["attention_mask"]}
    got = run_engine(sparse24, tmp_path, model_path, feeds, "--sparsity", "disable")["sentence_embedding"]
    want = fixture["embeddings"]
    assert len(want) >= 20
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.9999, f"lowest cosine {cos.min()}"


@pytest.mark.parametrize("case", list(CASES))
def test_device_cuda_runs_or_says_why_not(sparse24, tmp_path, case):
    """--device cuda: with a GPU, the linear layers run there (bf16 operands, f32 sums) and the outputs match
    onnxruntime to bf16 precision; without one, one clear line and exit 1, and no output written."""
    make, feeds_for = CASES[case]
    model_path = pruned(sparse24, tmp_path, make(), case)
    feeds = feeds_for(2)
    args = []
    for k, v in feeds.items():
        np.save(tmp_path / f"in_{k}.npy", v)
        args += ["--input", f"{k}={tmp_path / f'in_{k}.npy'}"]
    out = tmp_path / "out_cuda"
    p = sparse24("run", model_path, *args, "-o", out, "--device", "cuda", "--batch", "2", "--seq", "12",
                 check=False)
    if p.returncode != 0:
        assert p.returncode == 1
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "--device cuda" in lines[0], p.stderr
        assert not out.exists()
        pytest.skip(f"no GPU here: {lines[0]}")
    got = {f[:-4]: np.load(out / f) for f in os.listdir(out)}
    assert_close(got, ort_outputs(model_path, feeds), rtol=3e-2)


@pytest.mark.parametrize("isa", ["avx2", "ref"])
@pytest.mark.parametrize("case", list(CASES))
def test_lower_isa_paths_match_onnxruntime(sparse24, tmp_path, monkeypatch, case, isa):
    """The same models with SPARSE24_ISA forcing the AVX2 or portable kernels (and the engine's non-AVX-512
    softmax; 2:4 convolutions read their patches in place on AVX2 and go through im2col on the portable
    kernels): what a CPU without AVX-512 runs."""
    if isa == "avx2" and "avx2" not in open("/proc/cpuinfo").read():
        pytest.skip("this CPU has no AVX2")
    monkeypatch.setenv("SPARSE24_ISA", isa)
    make, feeds_for = CASES[case]
    model_path = pruned(sparse24, tmp_path, make(), case)
    feeds = feeds_for(3)
    got = run_engine(sparse24, tmp_path, model_path, feeds, "--sparsity", "force", "--batch", "3", "--seq", "12")
    assert_close(got, ort_outputs(model_path, feeds))


def test_attention_fusion_takes_the_mask_add_in_either_order(sparse24, tmp_path):
    """Add(mask, scores) fuses like Add(scores, mask), also when the mask comes out of a Mul (as Hugging Face's
    (1 - mask) · min exports it): the scores are the operand that leads back to the MatMul."""
    from onnx import helper, numpy_helper
    model = models.transformer()
    g = model.graph
    mask_value = next(n.output[0] for n in g.node if n.op_type == "Where")
    g.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), "c_mask_one"))
    swapped = 0
    for node in g.node:
        if node.op_type == "Add" and mask_value in node.input:
            scores = node.input[0] if node.input[1] == mask_value else node.input[1]
            node.input[0], node.input[1] = "mask_scaled", scores
            swapped += 1
    where = next(i for i, n in enumerate(g.node) if n.op_type == "Where")
    g.node.insert(where + 1, helper.make_node("Mul", [mask_value, "c_mask_one"], ["mask_scaled"], name="mask_scale"))
    assert swapped == 2, "the test model changed: expected one mask Add per layer"
    model_path = pruned(sparse24, tmp_path, model, "transformer_swapped")
    p = sparse24("build", model_path, "-o", tmp_path / "t.plan", "--batch", "2", "--seq", "12")
    assert "2 attention blocks fused" in p.stdout, p.stdout
    feeds = CASES["transformer"][1](2)
    assert_close(run_engine(sparse24, tmp_path, tmp_path / "t.plan", feeds), ort_outputs(model_path, feeds))


def fnv1a(data):
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def test_plan_keeps_each_layers_timed_kernel(sparse24, tmp_path):
    # 1024-wide layers at batch 1: 2:4 beats dense about twice over wherever a SIMD ISA runs, so the planner
    # keeps 2:4 and times its GEMV and GEMM kernels among themselves.
    model_path = pruned(sparse24, tmp_path, models.mlp(sizes=(784, 1024, 1024, 10)), "mlp_wide")
    plan = tmp_path / "m.plan"
    p = sparse24("build", model_path, "-o", plan, "--batch", "1")
    if "ISA ref" in p.stdout:
        pytest.skip("the portable kernels have a single 2:4 kernel to choose")
    kernels = {row.split()[0]: row.split()[-1] for row in p.stdout.splitlines() if row.startswith("fc")}
    for layer in ("fc0", "fc1"):
        assert kernels[layer].startswith("f32_spmm_24_"), p.stdout
    # The plan runs its layers on those kernels (at batch 1) and matches onnxruntime.
    feeds = {"pixels": rng.random((1, 784), dtype=np.float32)}
    assert_close(run_engine(sparse24, tmp_path, plan, feeds), ort_outputs(model_path, feeds))
    # A plan naming a kernel this sparse24 lacks (checksum made right again) is refused by name.
    data = bytearray(plan.read_bytes())
    name = kernels["fc0"].encode()
    at = data.index(name, 32)
    data[at + len(name) - 1] = ord("X")
    data[24:32] = fnv1a(bytes(data[32:])).to_bytes(8, "little")
    foreign = tmp_path / "foreign.plan"
    foreign.write_bytes(bytes(data))
    np.save(tmp_path / "x.npy", feeds["pixels"])
    r = sparse24("run", foreign, "--input", f"pixels={tmp_path / 'x.npy'}", "-o", tmp_path / "out2", check=False)
    assert r.returncode == 1 and "does not have" in r.stderr and name.decode()[:-1] + "X" in r.stderr, r.stderr
    assert not (tmp_path / "out2").exists()
