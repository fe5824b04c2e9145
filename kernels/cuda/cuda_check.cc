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

}  // namespace sparse24::cuda
