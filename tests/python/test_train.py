"""sparse24 train / finetune / eval from the command line: fixed 2:4 masks survive retraining, the engine's
accuracy agrees with onnxruntime, seeds repeat bit for bit, and every kind of bad input is one clear error.
Small subsets of Fashion-MNIST (--limit) keep the whole file well under a minute."""
import gzip
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from conftest import float_init, save_model, value_info
from test_errors import assert_dir_holds, assert_user_error

FMNIST = "/usr/share/datasets/fashion-mnist"
LIMIT = "600"


@pytest.fixture(scope="module")
def sparse24(sparse24):
    """The conftest runner with one thread for training and evaluation unless a test picks the threads: the
    machines that run the tests are shared, and one thread is both quick and undisturbed there."""
    def run(*args, check=True):
        extra = ["--threads", "1"] if args[0] in ("train", "finetune", "eval") and "--threads" not in args else []
        return sparse24(*args, *extra, check=check)
    return run


def weights(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def fmnist_test(limit):
    def idx(name, offset):
        with gzip.open(f"{FMNIST}/{name}") as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)
    x = idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784)[:limit].astype(np.float32) / 255.0
    return x, idx("t10k-labels-idx1-ubyte.gz", 8)[:limit].astype(np.int64)


@pytest.fixture(scope="module")
def mlp(sparse24, tmp_path_factory):
    """A dense MLP trained on 600 images, and its 2:4 pruned copy."""
    d = tmp_path_factory.mktemp("mlp")
    sparse24("train", "--arch", "mlp", "--limit", LIMIT, "--epochs", "1", "--batch-size", "32", "--seed", "3",
             "-o", d / "dense.onnx")
    sparse24("prune", d / "dense.onnx", "-o", d / "pruned.onnx")
    return d


def test_finetune_keeps_every_pruned_weight_zero(sparse24, mlp, tmp_path):
    out = tmp_path / "ft.onnx"
    p = sparse24("finetune", mlp / "pruned.onnx", "--limit", LIMIT, "--epochs", "2", "-o", out,
                 "--json", tmp_path / "ft.json")
    assert "fc1.weight" in p.stdout  # the table of masked weights
    before, after = weights(mlp / "pruned.onnx"), weights(out)
    for name in ("fc1.weight", "fc2.weight", "fc3.weight"):
        zeros = before[name] == 0
        assert zeros.mean() == pytest.approx(0.5), name  # magnitude 2:4 pruning
        assert np.all(after[name][zeros] == 0), f"{name}: a pruned weight came back"
        assert np.mean(after[name][~zeros] != before[name][~zeros]) > 0.9, f"{name}: the kept weights did not train"
    sparse24("check", out, "--json", tmp_path / "check.json")
    layers = json.loads((tmp_path / "check.json").read_text())["layers"]
    assert [l["fraction_24"] for l in layers] == [1.0, 1.0, 1.0]
    report = json.loads((tmp_path / "ft.json").read_text())
    assert {m["weight"] for m in report["masked"]} == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert all(m["kept"] * 2 == m["total"] for m in report["masked"])


def test_retraining_recovers_accuracy(sparse24, mlp, tmp_path):
    sparse24("finetune", mlp / "pruned.onnx", "--limit", "2000", "--epochs", "2", "--batch-size", "32", "--lr", "0.05",
             "-o", tmp_path / "ft.onnx")
    acc = {}
    for name, path in (("pruned", mlp / "pruned.onnx"), ("ft", tmp_path / "ft.onnx")):
        sparse24("eval", path, "--limit", "1000", "--json", tmp_path / f"{name}.json")
        acc[name] = json.loads((tmp_path / f"{name}.json").read_text())["accuracy"]
    assert acc["ft"] > 0.7
    assert acc["ft"] > acc["pruned"] + 0.05


@pytest.mark.parametrize("model", ["dense.onnx", "pruned.onnx"])
def test_eval_agrees_with_onnxruntime(sparse24, mlp, tmp_path, model):
    p = sparse24("eval", mlp / model, "--limit", "1000", "--json", tmp_path / "e.json")
    ours = json.loads((tmp_path / "e.json").read_text())
    assert ours["images"] == 1000 and "accuracy" in p.stdout
    x, y = fmnist_test(1000)
    logits = ort.InferenceSession(str(mlp / model), providers=["CPUExecutionProvider"]).run(None, {"pixels": x})[0]
    # The engine and onnxruntime round differently; at most a near-tie may flip.
    assert abs(ours["correct"] - int((logits.argmax(1) == y).sum())) <= 1


def test_eval_of_a_plan(sparse24, mlp, tmp_path):
    sparse24("build", mlp / "pruned.onnx", "-o", tmp_path / "m.plan", "--batch", "64")
    sparse24("eval", tmp_path / "m.plan", "--limit", "500", "--json", tmp_path / "plan.json")
    sparse24("eval", mlp / "pruned.onnx", "--limit", "500", "--json", tmp_path / "onnx.json")
    plan, onnx_ = (json.loads((tmp_path / f).read_text()) for f in ("plan.json", "onnx.json"))
    assert abs(plan["correct"] - onnx_["correct"]) <= 1


def test_fixed_seed_repeats_bit_for_bit(sparse24, tmp_path):
    def train(name, seed, threads):
        sparse24("train", "--arch", "cnn", "--limit", "128", "--epochs", "1", "--batch-size", "32", "--no-test",
                 "--seed", seed, "--threads", threads, "-o", tmp_path / name)
        return weights(tmp_path / name)
    a, b, c, d = train("a.onnx", 5, 1), train("b.onnx", 5, 1), train("c.onnx", 6, 1), train("d.onnx", 5, 2)
    assert a.keys() == b.keys() == c.keys() == d.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a), "same seed, different weights"
    assert all(np.array_equal(a[k], d[k]) for k in a), "one thread and two threads disagree"
    assert not all(np.array_equal(a[k], c[k]) for k in a), "the seed changed nothing"


@pytest.mark.parametrize("layout", ["npz", "npz_compressed", "npy_pair"])
def test_user_data_files(sparse24, tmp_path, layout):
    rng = np.random.default_rng(0)
    images = rng.random((96, 1, 28, 28), dtype=np.float32)
    labels = (images[:, 0, 0, 0] > 0.5).astype(np.int64)  # learnable from one pixel
    if layout == "npy_pair":
        np.save(tmp_path / "images.npy", images)
        np.save(tmp_path / "labels.npy", labels)
        data = ["--data", tmp_path / "images.npy", "--labels", tmp_path / "labels.npy"]
    else:
        (np.savez if layout == "npz" else np.savez_compressed)(tmp_path / "d.npz", images=images, labels=labels)
        data = ["--data", tmp_path / "d.npz"]
    p = sparse24("train", "--arch", "cnn", *data, "--epochs", "1", "--batch-size", "32", "-o", tmp_path / "m.onnx")
    assert "test accuracy" not in p.stdout  # no test split in a file unless --test-data names one
    p = sparse24("eval", tmp_path / "m.onnx", *data, "--json", tmp_path / "e.json")
    assert json.loads((tmp_path / "e.json").read_text())["images"] == 96
    if layout == "npz":  # a file as the test data, and AdamW with warmup
        p = sparse24("train", "--arch", "mlp", *data, "--test-data", tmp_path / "d.npz", "--epochs", "2",
                     "--batch-size", "16", "--optimizer", "adamw", "--lr", "0.003", "--warmup-epochs", "0.5",
                     "-o", tmp_path / "a.onnx")
        assert "epoch 2/2" in p.stdout and "test accuracy" in p.stdout and "(96 images)" in p.stdout


def test_progress_only_when_asked(sparse24, mlp, tmp_path):
    quiet = sparse24("finetune", mlp / "pruned.onnx", "--limit", "256", "--epochs", "1", "-o", tmp_path / "a.onnx")
    assert quiet.stderr == ""
    loud = sparse24("finetune", mlp / "pruned.onnx", "--limit", "256", "--epochs", "1", "-o", tmp_path / "b.onnx",
                    "--progress")
    assert "epoch 1/1 [" in loud.stderr and "left" in loud.stderr


# ---- bad input: one line, exit 1, nothing written -------------------------------------------------------

def test_missing_dataset(sparse24, tmp_path):
    for data in (tmp_path / "nowhere", tmp_path / "missing.npz"):
        assert_user_error(sparse24("train", "--arch", "mlp", "--data", data, "-o", tmp_path / "m.onnx", check=False),
                          "not found")
    (tmp_path / "idx").mkdir()
    assert_user_error(sparse24("train", "--arch", "mlp", "--data", tmp_path / "idx", "-o", tmp_path / "m.onnx",
                               check=False), "train-images-idx3-ubyte.gz", "not found")
    assert_dir_holds(tmp_path, ["idx"])


def test_image_label_count_mismatch(sparse24, tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((10, 784), np.float32), labels=np.zeros(9, np.int64))
    assert_user_error(sparse24("train", "--arch", "mlp", "--data", tmp_path / "d.npz", "-o", tmp_path / "m.onnx",
                               check=False), "10 images but 9 labels")
    # The same in idx files: a folder whose train images and labels disagree.
    (tmp_path / "idx").mkdir()
    header = lambda magic, *dims: np.array([magic, *dims], ">u4").tobytes()
    with gzip.open(tmp_path / "idx/train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header(0x803, 5, 28, 28) + bytes(5 * 784))
    with gzip.open(tmp_path / "idx/train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(header(0x801, 4) + bytes(4))
    assert_user_error(sparse24("train", "--arch", "mlp", "--data", tmp_path / "idx", "--no-test",
                               "-o", tmp_path / "m.onnx", check=False), "holds 5 images", "holds 4 labels")
    assert_dir_holds(tmp_path, ["d.npz", "idx"])


def test_untrainable_op_is_named(sparse24, tmp_path):
    rng = np.random.default_rng(0)
    save_model([helper.make_node("Gemm", ["pixels", "W"], ["h"], name="fc"),
                helper.make_node("Softmax", ["h"], ["probs"], name="head")],
               [float_init(rng, "W", (784, 12))], [value_info("pixels", ["N", 784])], [value_info("probs", ["N", 12])],
               tmp_path / "m.onnx")
    p = sparse24("finetune", tmp_path / "m.onnx", "--limit", "64", "-o", tmp_path / "o.onnx", check=False)
    assert_user_error(p, "op Softmax (node 'head') cannot be trained")
    assert_dir_holds(tmp_path, ["m.onnx"])


def test_labels_out_of_range(sparse24, mlp, tmp_path):
    labels = np.zeros(64, np.int64)
    labels[7] = 12
    np.savez(tmp_path / "d.npz", images=np.zeros((64, 784), np.float32), labels=labels)
    for cmd in (["finetune", mlp / "pruned.onnx", "-o", tmp_path / "o.onnx"], ["eval", mlp / "dense.onnx"]):
        assert_user_error(sparse24(*cmd, "--data", tmp_path / "d.npz", check=False),
                          "label 12 of image 7 is out of range", "10 classes")
    assert_dir_holds(tmp_path, ["d.npz"])


def test_other_bad_input(sparse24, mlp, tmp_path):
    np.savez(tmp_path / "bright.npz", images=np.full((8, 784), 2.0, np.float32), labels=np.zeros(8, np.int64))
    assert_user_error(sparse24("eval", mlp / "dense.onnx", "--data", tmp_path / "bright.npz", check=False),
                      "[0, 1]")
    assert_user_error(sparse24("finetune", mlp / "dense.onnx", "--limit", "64", "-o", tmp_path / "o.onnx",
                               check=False), "no weight of the model is 2:4")
    assert_user_error(sparse24("finetune", mlp / "pruned.onnx", "-o", mlp / "pruned.onnx", check=False))
    assert_user_error(sparse24("train", "--arch", "resnet", "--limit", "64", "-o", tmp_path / "o.onnx", check=False),
                      "--arch must be mlp or cnn")
    assert_user_error(sparse24("train", "--arch", "mlp", "--limit", "64", "--optimizer", "lion",
                               "-o", tmp_path / "o.onnx", check=False), "--optimizer")
    assert_dir_holds(tmp_path, ["bright.npz"])
