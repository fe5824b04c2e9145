"""Builds the demo's dense model: a small CNN + MLP classifier for 28x28 images, with random weights (the
training step arrives with `sparse24 train`). Writes an ONNX file and prints nothing else."""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
rng = np.random.default_rng(2024)


def w(name, shape, fan_in):
    return numpy_helper.from_array((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32), name)


inits = [
    w("conv1.weight", (16, 1, 3, 3), 9), w("conv1.bias", (16,), 9),
    w("conv2.weight", (32, 16, 3, 3), 144), w("conv2.bias", (32,), 144),
    w("fc1.weight", (256, 32 * 7 * 7), 32 * 49), w("fc1.bias", (256,), 32 * 49),
    w("fc2.weight", (10, 256), 256), w("fc2.bias", (10,), 256),
]
nodes = [
    helper.make_node("Conv", ["pixels", "conv1.weight", "conv1.bias"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
    helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
    helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
    helper.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
    helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
    helper.make_node("MaxPool", ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
    helper.make_node("Flatten", ["p2"], ["f"], name="flatten"),
    helper.make_node("Gemm", ["f", "fc1.weight", "fc1.bias"], ["h"], name="fc1", transB=1),
    helper.make_node("Relu", ["h"], ["hr"], name="relu3"),
    helper.make_node("Gemm", ["hr", "fc2.weight", "fc2.bias"], ["logits"], name="fc2", transB=1),
]
graph = helper.make_graph(nodes, "demo_cnn",
                          [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 1, 28, 28])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, out)
