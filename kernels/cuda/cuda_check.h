#pragma once
// CUDA runtime and cuBLAS status checks that turn a failure into sparse24::Error naming the call.
#include <cuda_runtime_api.h>
#include <library_types.h>

#include <string>

#include "format/dtype.h"

namespace sparse24::cuda {

/// Throws Error("<call>: <CUDA error name>: <description>") unless status is cudaSuccess.
void check_cuda(cudaError_t status, const char* call);

/// The CUDA data type of an element type (f16, bf16, i8, i32; anything else is f32).
cudaDataType cuda_data_type(DType t);

/// True when a CUDA device is present and usable; `why_not` receives the reason when it is not.
bool cuda_device_available(std::string* why_not = nullptr);

}  // namespace sparse24::cuda

/// Checks a CUDA runtime call; the error message names the call as written.
#define S24_CUDA_CHECK(call) ::sparse24::cuda::check_cuda((call), #call)
