#pragma once
// Forward and backward of every op training supports, templated on the element type: float trains, double
// runs the finite-difference checks through exactly the same code. Forward ops keep what their backward
// needs in a NodeCache; backward ops ADD into the input gradients they are asked for, since a value read by
// several nodes collects a gradient from each.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/ir.h"
#include "train/tensor_buf.h"

namespace sparse24::train {

/// What a node's forward keeps for its backward.
template <typename T>
struct NodeCache {
  std::vector<T> saved;        ///< op-specific: im2col patches (Conv)
  std::vector<T> stats;        ///< BatchNormalization: batch mean then batch variance; LayerNorm: mean, 1/std
  std::vector<int64_t> index;  ///< MaxPool: the input position of each output's maximum
  std::vector<uint8_t> keep;   ///< Dropout: 1 where the element was kept
  bool training = false;       ///< the mode the forward ran in
};

/// How a forward runs.
struct ForwardMode {
  bool training = false;  ///< BatchNormalization uses batch statistics; Dropout drops
  uint64_t seed = 0;      ///< Dropout: the mask bits are a hash of (seed, node index, element)
  uint64_t node_index = 0;
};

/// A node's inputs: values (null when absent) and, for constant inputs, the tensor as stored in the model
/// (integer inputs such as Reshape's shape are read from there; null otherwise).
template <typename T>
struct OpInputs {
  std::span<const Buf<T>* const> values;
  std::span<const Tensor* const> constants;
};

/// Computes a node's outputs (shape and data) and fills its cache.
template <typename T>
using ForwardFn = void (*)(const engine::Node& node, const OpInputs<T>& in, std::span<Buf<T>> out,
                           NodeCache<T>& cache, const ForwardMode& mode);

/// Adds dLoss/dInput into din[i] (already shaped like input i) for every non-null din[i], given the forward's
/// inputs and outputs and dLoss/dOutput (null for an output nothing depends on).
template <typename T>
using BackwardFn = void (*)(const engine::Node& node, const OpInputs<T>& in,
                            std::span<const Buf<T>* const> out, std::span<const Buf<T>* const> dout,
                            std::span<Buf<T>* const> din, const NodeCache<T>& cache);

/// An op training runs.
template <typename T>
struct TrainOp {
  std::string_view op_type;
  ForwardFn<T> forward;
  BackwardFn<T> backward;       ///< null: forward only (legal where no gradient flows through it)
  uint32_t differentiable = 0;  ///< bit i: input i receives a gradient
  uint32_t parameters = 0;      ///< bit i: a float initializer at input i is a trainable parameter
};

/// The op with this ONNX op_type, or null.
template <typename T>
const TrainOp<T>* find_train_op(std::string_view op_type);

/// Every op_type training runs, and the subset with a backward.
std::vector<std::string_view> trainable_ops();

/// Throws Error: "op X (node 'Y') cannot be trained: why".
[[noreturn]] void cannot_train(const engine::Node& node, const std::string& why);

/// Mean softmax cross-entropy of logits [B][C] against labels (each in [0, C)). Writes dLoss/dLogits into
/// `dlogits` when non-null and the number of rows whose arg-max is the label into `correct` when non-null.
template <typename T>
double softmax_cross_entropy(const Buf<T>& logits, std::span<const int64_t> labels, Buf<T>* dlogits,
                             int64_t* correct);

/// Row-major C[M][N] = alpha · op(A) · op(B) + beta · C through OpenBLAS (sgemm or dgemm).
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace sparse24::train
