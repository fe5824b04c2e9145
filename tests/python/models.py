"""Small models made with onnx.helper for the engine tests and benchmarks: an MLP, a CNN (conv + batchnorm +
relu + pool + a residual add) and a 2-layer transformer encoder (the BERT builder of scripts/minilm)."""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "minilm"))
import to_onnx  # noqa: E402


def _model(nodes, inits, inputs, outputs, name):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(m)
    return m


def _w(rng, name, shape, fan_in):
    return numpy_helper.from_array((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32), name)


def mlp(seed=0, sizes=(784, 512, 256, 10), clip=False):
    """Gemm(transB=1) + Relu layers; input pixels [batch, 784].
    clip: the activations as Clip instead, alternately Clip(0, 6) (ReLU6) and Clip(0) with no upper bound."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "pixels"
    if clip:
        inits += [numpy_helper.from_array(np.array(0, np.float32), "zero"),
                  numpy_helper.from_array(np.array(6, np.float32), "six")]
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        inits += [_w(rng, f"fc{i}.weight", (n, k), k), _w(rng, f"fc{i}.bias", (n,), k)]
        out = "logits" if i == len(sizes) - 2 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [x, f"fc{i}.weight", f"fc{i}.bias"], [out], name=f"fc{i}", transB=1))
        if out != "logits":
            if not clip:
                nodes.append(helper.make_node("Relu", [out], [out + "_relu"], name=f"relu{i}"))
            else:
                bounds = ["zero", "six"] if i % 2 == 0 else ["zero"]
                nodes.append(helper.make_node("Clip", [out] + bounds, [out + "_relu"], name=f"clip{i}"))
            out += "_relu"
        x = out
    return _model(nodes, inits, [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", sizes[0]])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", sizes[-1]])], "mlp")


def cnn(seed=0, width=32, channels=4, size=16, relu6=False):
    """conv-bn-relu, maxpool, a residual block (conv-bn-relu-conv-bn + skip, relu), global pool, Gemm;
    input pixels [batch, channels, size, size]. relu6: the convolutions' ReLUs as Clip(0, 6)."""
    rng = np.random.default_rng(seed)
    c = width
    inits, nodes = [], []
    if relu6:
        inits += [numpy_helper.from_array(np.array(0, np.float32), "zero"),
                  numpy_helper.from_array(np.array(6, np.float32), "six")]

    def conv_bn(name, x, cin, cout, relu):
        inits.extend([_w(rng, f"{name}.weight", (cout, cin, 3, 3), cin * 9)])
        inits.extend(numpy_helper.from_array(v.astype(np.float32), f"{name}.bn.{k}") for k, v in {
            "scale": 1 + 0.1 * rng.standard_normal(cout), "bias": 0.1 * rng.standard_normal(cout),
            "mean": 0.1 * rng.standard_normal(cout), "var": 1 + 0.1 * rng.random(cout)}.items())
        nodes.append(helper.make_node("Conv", [x, f"{name}.weight"], [f"{name}_c"], name=name, pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("BatchNormalization", [f"{name}_c"] + [f"{name}.bn.{k}" for k in
                                      ("scale", "bias", "mean", "var")], [f"{name}_bn"], name=f"{name}.bn"))
        if not relu:
            return f"{name}_bn"
        if relu6:
            nodes.append(helper.make_node("Clip", [f"{name}_bn", "zero", "six"], [f"{name}_r"], name=f"{name}.relu"))
        else:
            nodes.append(helper.make_node("Relu", [f"{name}_bn"], [f"{name}_r"], name=f"{name}.relu"))
        return f"{name}_r"

    stem = conv_bn("stem", "pixels", channels, c, True)
    nodes.append(helper.make_node("MaxPool", [stem], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]))
    h = conv_bn("block.conv1", "pool", c, c, True)
    h = conv_bn("block.conv2", h, c, c, False)
    nodes.append(helper.make_node("Add", [h, "pool"], ["res"], name="residual"))
    nodes.append(helper.make_node("Relu", ["res"], ["res_r"], name="residual.relu"))
    nodes.append(helper.make_node("GlobalAveragePool", ["res_r"], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
    inits += [_w(rng, "fc.weight", (12, c), c), _w(rng, "fc.bias", (12,), c)]
    nodes.append(helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1))
    return _model(nodes, inits,
                  [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", channels, size, size])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 12])], "cnn")


def conv_features(seed=0, channels=3, width=16, size=12, resnet_stem=False):
    """A feature extractor whose output is a GlobalAveragePool: conv-relu, maxpool, conv-relu, then the
    pooled features [batch, width, 1, 1] as the graph's output; input pixels [batch, channels, size, size].
    resnet_stem: ResNet's 7x7 stride-2 convolution and 3x3 stride-2 padded MaxPool (which stays a node of
    its own) instead of a 3x3 convolution and a 2x2 MaxPool (which fuses into it)."""
    rng = np.random.default_rng(seed)
    k1 = 7 if resnet_stem else 3
    inits = [_w(rng, "conv1.weight", (width, channels, k1, k1), channels * k1 * k1),
             _w(rng, "conv1.bias", (width,), 9),
             _w(rng, "conv2.weight", (width, width, 3, 3), width * 9), _w(rng, "conv2.bias", (width,), 9)]
    stem = dict(pads=[3] * 4, strides=[2, 2]) if resnet_stem else dict(pads=[1] * 4)
    pool = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4) if resnet_stem else dict(kernel_shape=[2, 2],
                                                                                             strides=[2, 2])
    nodes = [helper.make_node("Conv", ["pixels", "conv1.weight", "conv1.bias"], ["c1"], name="conv1", **stem),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], name="pool", **pool),
             helper.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2", pads=[1] * 4),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["features"], name="gap")]
    return _model(nodes, inits,
                  [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", channels, size, size])],
                  [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", width, 1, 1])],
                  "conv_features")


def conv_branches(seed=0, channels=3, width=16, size=12):
    """An Inception-style block: a stem convolution, two branches (1x1 and 3x3 convolutions) concatenated
    along the channels, a padded 3x3 AveragePool, a 3x3 convolution, GlobalAveragePool and a Gemm; input
    pixels [batch, channels, size, size], logits [batch, 10]."""
    rng = np.random.default_rng(seed)
    inits = [_w(rng, "stem.weight", (width, channels, 3, 3), channels * 9), _w(rng, "stem.bias", (width,), 9),
             _w(rng, "a.weight", (width, width, 1, 1), width), _w(rng, "a.bias", (width,), width),
             _w(rng, "b.weight", (width, width, 3, 3), width * 9), _w(rng, "b.bias", (width,), width * 9),
             _w(rng, "c.weight", (width, 2 * width, 3, 3), 2 * width * 9), _w(rng, "c.bias", (width,), 9),
             _w(rng, "fc.weight", (10, width), width), _w(rng, "fc.bias", (10,), width)]
    nodes = [helper.make_node("Conv", ["pixels", "stem.weight", "stem.bias"], ["s"], name="stem", pads=[1] * 4),
             helper.make_node("Relu", ["s"], ["sr"], name="stem.relu"),
             helper.make_node("Conv", ["sr", "a.weight", "a.bias"], ["a"], name="branch_a"),
             helper.make_node("Conv", ["sr", "b.weight", "b.bias"], ["b"], name="branch_b", pads=[1] * 4),
             helper.make_node("Concat", ["a", "b"], ["ab"], name="concat", axis=1),
             helper.make_node("AveragePool", ["ab"], ["p"], name="pool", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Conv", ["p", "c.weight", "c.bias"], ["c"], name="conv_c", pads=[1] * 4),
             helper.make_node("Relu", ["c"], ["cr"], name="conv_c.relu"),
             helper.make_node("GlobalAveragePool", ["cr"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1)]
    return _model(nodes, inits,
                  [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", channels, size, size])],
                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], "conv_branches")


def inverted_residual(seed=0, channels=16, expand=48, size=14, relu6=False):
    """A MobileNetV2 block: 1x1 expansion, ReLU, 3x3 depthwise convolution, ReLU, 1x1 projection, the
    block's input added back, GlobalAveragePool as the output; input pixels [batch, channels, size, size].
    relu6: the ReLUs as Clip(0, 6), as PyTorch exports MobileNetV2's ReLU6."""
    rng = np.random.default_rng(seed)
    inits = [_w(rng, "expand.weight", (expand, channels, 1, 1), channels), _w(rng, "expand.bias", (expand,), channels),
             _w(rng, "dw.weight", (expand, 1, 3, 3), 9), _w(rng, "dw.bias", (expand,), 9),
             _w(rng, "project.weight", (channels, expand, 1, 1), expand),
             _w(rng, "project.bias", (channels,), expand)]
    def act(x, y, name):
        if not relu6:
            return helper.make_node("Relu", [x], [y], name=name)
        return helper.make_node("Clip", [x, "zero", "six"], [y], name=name)

    inits += [numpy_helper.from_array(np.array(0, np.float32), "zero"),
              numpy_helper.from_array(np.array(6, np.float32), "six")]
    nodes = [helper.make_node("Conv", ["pixels", "expand.weight", "expand.bias"], ["e"], name="expand"),
             act("e", "er", "expand.relu"),
             helper.make_node("Conv", ["er", "dw.weight", "dw.bias"], ["d"], name="depthwise", pads=[1] * 4,
                              group=expand),
             act("d", "dr", "depthwise.relu"),
             helper.make_node("Conv", ["dr", "project.weight", "project.bias"], ["p"], name="project"),
             helper.make_node("Add", ["p", "pixels"], ["r"], name="residual"),
             helper.make_node("GlobalAveragePool", ["r"], ["features"], name="gap")]
    return _model(nodes, inits,
                  [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", channels, size, size])],
                  [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", channels, 1, 1])],
                  "inverted_residual")


def transformer(seed=0, hidden=64, heads=4, layers=2, ffn=256):
    """A 2-layer BERT-style encoder with mean pooling; inputs input_ids/attention_mask [batch, seq] int64."""
    w = to_onnx.random_bert_weights(hidden, layers, ffn, seed=seed)
    return to_onnx.build_bert(w, hidden, heads, layers, "transformer")
