#pragma once
// The architectures `sparse24 train --arch` builds, as ONNX graphs made with the onnx protobuf classes.
// Both take float32 pixels in [0, 1] and return logits [batch, 10]; the input normalisation is part of the
// graph (Sub, Mul) so that every runtime sees the same model. Every layer after the first is 2:4-eligible:
//   mlp: [B,784] -> Gemm 256 -> Relu -> Gemm 128 -> Relu -> Gemm 10
//   cnn: [B,1,28,28] -> Conv 16 3x3 -> BN -> Relu -> MaxPool 2 -> Conv 32 3x3 -> BN -> Relu -> MaxPool 2
//        -> Flatten -> Gemm 128 -> Relu -> Gemm 10
#include <cstdint>
#include <string>
#include <vector>

#include "graph/onnx_io.h"

namespace sparse24::train {

/// The architectures `build_model` knows.
std::vector<std::string> model_architectures();

/// A freshly initialised model (He-uniform weights from `seed`, zero biases, BN at identity). `pixel_mean`
/// and `pixel_std` set the normalisation in front; `image_shape` is one image (e.g. {1, 28, 28}), `classes`
/// the number of logits. Throws Error for an unknown architecture or a shape it does not fit.
OnnxModel build_model(const std::string& arch, uint64_t seed, const std::vector<int64_t>& image_shape,
                      int64_t classes, double pixel_mean, double pixel_std);

}  // namespace sparse24::train
