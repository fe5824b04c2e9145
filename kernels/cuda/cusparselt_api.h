#pragma once
// The part of the cuSPARSELt 0.8 C API sparse24 calls, declared here so that the library is loaded at run
// time (dlopen of libcusparseLt.so.0) and building needs no cuSPARSELt package. Written from NVIDIA's
// documented API: every opaque handle is 512 bytes aligned to 16, enums carry their documented values, and
// each function type matches the documented signature. tests/cuda/check_cusparselt_api.cc holds all of this
// to the real cusparseLt.h with static_asserts whenever that header is found at configure time.
#include <cuda_runtime_api.h>
#include <library_types.h>  // cudaDataType, libraryPropertyType (CUDA toolkit)

#include <cstddef>
#include <cstdint>
#include <string>

namespace sparse24::cuda::cslt {

/// Opaque cuSPARSELt object storage (cusparseLtHandle_t, ...MatDescriptor_t, ...MatmulDescriptor_t,
/// ...MatmulAlgSelection_t, ...MatmulPlan_t all have this shape).
struct Opaque {
  alignas(16) uint8_t data[512];
};
using Handle = Opaque;
using MatDescriptor = Opaque;
using MatmulDescriptor = Opaque;
using AlgSelection = Opaque;
using MatmulPlan = Opaque;

/// cusparseStatus_t (cusparse.h); 0 is CUSPARSE_STATUS_SUCCESS.
enum Status : int { kSuccess = 0 };
/// cusparseOrder_t.
enum Order : int { kOrderCol = 1, kOrderRow = 2 };
/// cusparseOperation_t.
enum Operation : int { kOpNonTranspose = 0, kOpTranspose = 1 };
/// cusparseLtSparsity_t.
enum Sparsity : int { kSparsity50Percent = 0 };
/// cusparseComputeType.
enum ComputeType : int { kCompute32I = 0, kCompute16F = 1, kCompute32F = 2 };
/// cusparseLtMatmulAlg_t.
enum MatmulAlg : int { kMatmulAlgDefault = 0 };
/// cusparseLtMatmulAlgAttribute_t (the values used here).
enum AlgAttribute : int { kAlgConfigId = 0, kAlgConfigMaxId = 1, kSearchIterations = 2 };

// Function types, in the documented argument order.
using GetPropertyFn = Status (*)(libraryPropertyType, int*);
using GetErrorStringFn = const char* (*)(Status);
using InitFn = Status (*)(Handle*);
using DestroyFn = Status (*)(const Handle*);
using GetVersionFn = Status (*)(const Handle*, int*);
using DenseDescriptorInitFn = Status (*)(const Handle*, MatDescriptor*, int64_t rows, int64_t cols,
                                         int64_t ld, uint32_t alignment, cudaDataType, Order);
using StructuredDescriptorInitFn = Status (*)(const Handle*, MatDescriptor*, int64_t rows, int64_t cols,
                                              int64_t ld, uint32_t alignment, cudaDataType, Order, Sparsity);
using MatDescriptorDestroyFn = Status (*)(const MatDescriptor*);
using MatmulDescriptorInitFn = Status (*)(const Handle*, MatmulDescriptor*, Operation opA, Operation opB,
                                          const MatDescriptor* a, const MatDescriptor* b,
                                          const MatDescriptor* c, const MatDescriptor* d, ComputeType);
using MatmulAlgSelectionInitFn = Status (*)(const Handle*, AlgSelection*, const MatmulDescriptor*, MatmulAlg);
using MatmulAlgSelectionDestroyFn = Status (*)(const AlgSelection*);
using MatmulAlgSetAttributeFn = Status (*)(const Handle*, AlgSelection*, AlgAttribute, const void* data,
                                           size_t size);
using MatmulPlanInitFn = Status (*)(const Handle*, MatmulPlan*, const MatmulDescriptor*, const AlgSelection*);
using MatmulPlanDestroyFn = Status (*)(const MatmulPlan*);
using MatmulGetWorkspaceFn = Status (*)(const Handle*, const MatmulPlan*, size_t* bytes);
using MatmulFn = Status (*)(const Handle*, const MatmulPlan*, const void* alpha, const void* a, const void* b,
                            const void* beta, const void* c, void* d, void* workspace, cudaStream_t* streams,
                            int32_t num_streams);
using MatmulSearchFn = Status (*)(const Handle*, MatmulPlan*, const void* alpha, const void* a, const void* b,
                                  const void* beta, const void* c, void* d, void* workspace,
                                  cudaStream_t* streams, int32_t num_streams);
using CompressedSize2Fn = Status (*)(const Handle*, const MatDescriptor*, size_t* compressed_bytes,
                                     size_t* compress_buffer_bytes);
using Compress2Fn = Status (*)(const Handle*, const MatDescriptor*, int is_sparse_a, Operation op,
                               const void* dense, void* compressed, void* compress_buffer,
                               cudaStream_t stream);
using PruneCheck2Fn = Status (*)(const Handle*, const MatDescriptor*, int is_sparse_a, Operation op,
                                 const void* dense, int* device_valid, cudaStream_t stream);

/// The library's entry points, resolved once with dlsym.
struct Api {
  GetPropertyFn GetProperty;
  GetErrorStringFn GetErrorString;
  InitFn Init;
  DestroyFn Destroy;
  GetVersionFn GetVersion;
  DenseDescriptorInitFn DenseDescriptorInit;
  StructuredDescriptorInitFn StructuredDescriptorInit;
  MatDescriptorDestroyFn MatDescriptorDestroy;
  MatmulDescriptorInitFn MatmulDescriptorInit;
  MatmulAlgSelectionInitFn MatmulAlgSelectionInit;
  MatmulAlgSelectionDestroyFn MatmulAlgSelectionDestroy;
  MatmulAlgSetAttributeFn MatmulAlgSetAttribute;
  MatmulPlanInitFn MatmulPlanInit;
  MatmulPlanDestroyFn MatmulPlanDestroy;
  MatmulGetWorkspaceFn MatmulGetWorkspace;
  MatmulFn Matmul;
  MatmulSearchFn MatmulSearch;
  CompressedSize2Fn SpMMACompressedSize2;
  Compress2Fn SpMMACompress2;
  PruneCheck2Fn SpMMAPruneCheck2;
  int version = 0;  ///< major·1000 + minor·100 + patch, from cusparseLtGetProperty
};

/// Lowest cuSPARSELt version this API description matches (0.8.0).
inline constexpr int kMinVersion = 800;

/// Loads libcusparseLt once per process and returns its entry points, or null with `why_not` filled in when
/// it cannot (library not found, symbol missing, version below kMinVersion). Search order: the file named by
/// $SPARSE24_CUSPARSELT_LIB, then "libcusparseLt.so.0" on the loader's path, then the copy found at configure
/// time (SPARSE24_CUSPARSELT_DEFAULT_LIB), if any.
const Api* load_api(std::string* why_not);

}  // namespace sparse24::cuda::cslt
