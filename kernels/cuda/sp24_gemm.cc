#include "kernels/cuda/sp24_gemm.h"

#include "kernels/cuda/sp24_pack.h"
#include "util/error.h"

namespace sparse24::cuda {

std::string Sp24Gemm::can_implement(const Sparse24& w, const Sp24GemmConfig& config) {
  if (w.layout != Layout24::portable) return "the weight must be in the portable 2:4 layout";
  if (w.dtype != DType::f16 && w.dtype != DType::bf16 && w.dtype != DType::i8)
    return "mma.sp weights must be f16, bf16 or i8, not " + std::string(dtype_name(w.dtype));
  if (w.rows <= 0 || w.cols <= 0) return "the weight is empty";
  // cp.async moves activations in 16-byte chunks: every row must hold a whole number of them.
  const int64_t k_multiple = w.dtype == DType::i8 ? 16 : 8;
  if (w.cols % k_multiple != 0)
    return "K = " + std::to_string(w.cols) + " must be a multiple of " + std::to_string(k_multiple) +
           " for " + std::string(dtype_name(w.dtype));
  if (w.dtype == DType::i8) {
    if (config.output != DType::i32) return "i8 weights produce i32 outputs";
    if (config.has_bias || config.activation != reference::Activation::none)
      return "i8 GEMM has no bias or activation epilogue (apply them after dequantisation)";
  } else if (config.output != DType::f32 && config.output != w.dtype) {
    return std::string(dtype_name(w.dtype)) + " weights produce f32 or " + std::string(dtype_name(w.dtype)) +
           " outputs, not " + std::string(dtype_name(config.output));
  }
  return {};
}

void Sp24Gemm::initialize(const Sparse24& weight, const Sp24GemmConfig& config, const float* bias,
                          cudaStream_t stream) {
  if (std::string why = can_implement(weight, config); !why.empty()) fail("Sp24Gemm: {}", why);
  if (config.has_bias && !bias) fail("Sp24Gemm: config.has_bias is set but no bias was given");
  Sp24PackedWeight packed = pack_sp24_weight(weight);

  operand_ = weight.dtype == DType::i8     ? Sp24Operand::i8
             : weight.dtype == DType::bf16 ? Sp24Operand::bf16
                                           : Sp24Operand::f16;
  values_ = DeviceBuffer(packed.values.size());
  meta_ = DeviceBuffer(packed.meta.size());
  values_.upload(packed.values.data(), packed.values.size(), stream);
  meta_.upload(packed.meta.data(), packed.meta.size(), stream);
  if (config.has_bias) {
    bias_ = DeviceBuffer(size_t(weight.rows) * sizeof(float));
    bias_.upload(bias, bias_.size(), stream);
  } else {
    bias_ = DeviceBuffer();
  }
  // The packed host copy dies with this function: wait for the uploads.
  S24_CUDA_CHECK(cudaStreamSynchronize(stream));

  params_ = Sp24LaunchParams{};
  params_.values = values_.get();
  params_.meta = meta_.as<const uint32_t>();
  params_.bias = bias_.as<const float>();
  params_.n = packed.n;
  params_.k = packed.k;
  params_.steps = packed.steps();
  params_.meta_words_per_step = packed.meta_words_per_step();
  params_.row_tiles = packed.n_padded / kSp24RowTile;
  switch (config.output) {
    case DType::f16:
      params_.output = Sp24Output::f16;
      break;
    case DType::bf16:
      params_.output = Sp24Output::bf16;
      break;
    case DType::i32:
      params_.output = Sp24Output::i32;
      break;
    default:
      params_.output = Sp24Output::f32;
      break;
  }
  switch (config.activation) {
    case reference::Activation::none:
      params_.activation = Sp24Activation::none;
      break;
    case reference::Activation::relu:
      params_.activation = Sp24Activation::relu;
      break;
    case reference::Activation::gelu:
      params_.activation = Sp24Activation::gelu;
      break;
    case reference::Activation::relu6:
      params_.activation = Sp24Activation::relu6;
      break;
  }
}

void Sp24Gemm::run(const Sp24GemmArguments& args, cudaStream_t stream) const {
  if (!values_.get()) fail("Sp24Gemm::run before initialize");
  if (args.m < 0 || args.ldx < params_.k || args.ldy < params_.n)
    fail("Sp24Gemm::run: m = {}, ldx = {} (K = {}), ldy = {} (N = {}) are inconsistent", args.m, args.ldx,
         params_.k, args.ldy, params_.n);
  const int64_t elem = operand_ == Sp24Operand::i8 ? 1 : 2;
  // 16-byte cp.async chunks of activations: base and row stride must keep them aligned.
  if (reinterpret_cast<uintptr_t>(args.x) % 16 != 0 || (args.ldx * elem) % 16 != 0)
    fail("Sp24Gemm::run: activations must be 16-byte aligned with a row stride of a multiple of 16 bytes");
  Sp24LaunchParams p = params_;
  p.m = args.m;
  p.x = args.x;
  p.ldx = args.ldx;
  p.y = args.y;
  p.ldy = args.ldy;
  check_cuda(launch_sp24_gemm(operand_, args.kernel, p, stream), "launch_sp24_gemm");
}

}  // namespace sparse24::cuda
