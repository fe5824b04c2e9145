#include "kernels/cuda/cuda_check.h"

#include "util/error.h"

namespace sparse24::cuda {

void check_cuda(cudaError_t status, const char* call) {
  if (status != cudaSuccess) fail("{}: {}: {}", call, cudaGetErrorName(status), cudaGetErrorString(status));
}

bool cuda_device_available(std::string* why_not) {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    if (why_not)
      *why_not = status != cudaSuccess
                     ? std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status)
                     : std::string("no CUDA device");
    cudaGetLastError();  // clear the sticky-free error so later queries start clean
    return false;
  }
  return true;
}

cudaDataType cuda_data_type(DType t) {
  switch (t) {
    case DType::f16:
      return CUDA_R_16F;
    case DType::bf16:
      return CUDA_R_16BF;
    case DType::i8:
      return CUDA_R_8I;
    case DType::i32:
      return CUDA_R_32I;
    default:
      return CUDA_R_32F;
  }
}

}  // namespace sparse24::cuda
