#include "kernels/cuda/cusparselt_gemm.h"

#include "kernels/cuda/cuda_check.h"
#include "util/error.h"

namespace sparse24::cuda {

namespace {

// cuSPARSELt wants 16-byte aligned operands (cudaMalloc gives 256).
constexpr uint32_t kAlignment = 16;

}  // namespace

// The descriptors, algorithm choice and workspace of one M. Descriptors are destroyed with the plan.
struct CusparseltGemm::Plan {
  const cslt::Api* api = nullptr;
  cslt::MatDescriptor a{}, b{}, c{};
  cslt::MatmulDescriptor matmul{};
  cslt::AlgSelection alg{};
  cslt::MatmulPlan plan{};
  bool a_ok = false, b_ok = false, c_ok = false, alg_ok = false, plan_ok = false;
  DeviceBuffer workspace;
  ~Plan() {
    if (plan_ok) api->MatmulPlanDestroy(&plan);
    if (alg_ok) api->MatmulAlgSelectionDestroy(&alg);
    if (c_ok) api->MatDescriptorDestroy(&c);
    if (b_ok) api->MatDescriptorDestroy(&b);
    if (a_ok) api->MatDescriptorDestroy(&a);
  }
};

static void check(const cslt::Api* api, cslt::Status status, const char* call) {
  if (status != cslt::kSuccess) fail("{}: {} (status {})", call, api->GetErrorString(status), int(status));
}
#define S24_CSLT_CHECK(call) check(api_, (call), #call)

std::string CusparseltGemm::availability() {
  std::string why;
  return cslt::load_api(&why) ? std::string() : why;
}

std::string CusparseltGemm::can_implement(DType operand, DType output) {
  if ((operand == DType::f16 || operand == DType::bf16) && output == operand) return {};
  if (operand == DType::i8 && output == DType::i32) return {};
  return "cuSPARSELt backend runs f16->f16, bf16->bf16 and i8->i32, not " + std::string(dtype_name(operand)) +
         "->" + std::string(dtype_name(output));
}

CusparseltGemm::CusparseltGemm() {
  std::string why;
  api_ = cslt::load_api(&why);
  if (!api_) fail("{}", why);
  S24_CSLT_CHECK(api_->Init(&handle_));
  // The loader checked the library's own version (no device needed); the handle's is the one that runs.
  int version = 0;
  if (api_->GetVersion(&handle_, &version) != cslt::kSuccess || version < cslt::kMinVersion) {
    api_->Destroy(&handle_);
    fail("cuSPARSELt handle reports version {}; sparse24 needs 0.8.0 ({}) or later", version,
         cslt::kMinVersion);
  }
}

CusparseltGemm::~CusparseltGemm() {
  plans_.clear();
  if (api_) api_->Destroy(&handle_);
}

void CusparseltGemm::initialize(const Tensor& weight, DType output, cudaStream_t stream) {
  if (weight.rank() != 2)
    fail("cuSPARSELt backend: the weight must be 2-D [N][K], got {}", shape_str(weight.shape()));
  if (std::string why = can_implement(weight.dtype(), output); !why.empty()) fail("{}", why);
  operand_ = weight.dtype();
  output_ = output;
  n_ = weight.dim(0);
  k_ = weight.dim(1);
  plans_.clear();

  DeviceBuffer dense(weight.nbytes());
  dense.upload(weight.bytes(), weight.nbytes(), stream);
  cslt::MatDescriptor a{};
  S24_CSLT_CHECK(api_->StructuredDescriptorInit(&handle_, &a, n_, k_, k_, kAlignment,
                                                cuda_data_type(operand_), cslt::kOrderRow,
                                                cslt::kSparsity50Percent));
  struct DescriptorGuard {
    const cslt::Api* api;
    cslt::MatDescriptor* d;
    ~DescriptorGuard() { api->MatDescriptorDestroy(d); }
  } guard{api_, &a};

  // A weight that is not 2:4 would be silently pruned by compress: refuse it instead.
  DeviceBuffer valid(sizeof(int));
  S24_CSLT_CHECK(
      api_->SpMMAPruneCheck2(&handle_, &a, 1, cslt::kOpNonTranspose, dense.get(), valid.as<int>(), stream));
  int is_invalid = 1;
  S24_CUDA_CHECK(cudaMemcpyAsync(&is_invalid, valid.get(), sizeof(int), cudaMemcpyDeviceToHost, stream));
  S24_CUDA_CHECK(cudaStreamSynchronize(stream));
  // cusparseLtSpMMAPruneCheck2 writes 0 when the matrix is 2:4.
  if (is_invalid != 0) fail("cuSPARSELt backend: the {} x {} weight is not 2:4", n_, k_);

  size_t compressed_bytes = 0, buffer_bytes = 0;
  S24_CSLT_CHECK(api_->SpMMACompressedSize2(&handle_, &a, &compressed_bytes, &buffer_bytes));
  compressed_ = DeviceBuffer(compressed_bytes);
  DeviceBuffer buffer(buffer_bytes);
  S24_CSLT_CHECK(api_->SpMMACompress2(&handle_, &a, 1, cslt::kOpNonTranspose, dense.get(), compressed_.get(),
                                      buffer.get(), stream));
  S24_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void CusparseltGemm::prepare(int64_t m, const void* x, void* y, cudaStream_t stream) {
  if (!compressed_.get()) fail("CusparseltGemm::prepare before initialize");
  if (plans_.count(m)) return;
  auto p = std::make_unique<Plan>();
  p->api = api_;
  // Y[m][n] row-major is column-major D[n][m] = A · B with A = W[n][k] row-major (the 2:4 operand) and
  // B = Xᵀ, i.e. X[m][k] row-major read as a column-major k x m matrix: no transposes, no copies.
  S24_CSLT_CHECK(api_->StructuredDescriptorInit(&handle_, &p->a, n_, k_, k_, kAlignment,
                                                cuda_data_type(operand_), cslt::kOrderRow,
                                                cslt::kSparsity50Percent));
  p->a_ok = true;
  S24_CSLT_CHECK(api_->DenseDescriptorInit(&handle_, &p->b, k_, m, k_, kAlignment, cuda_data_type(operand_),
                                           cslt::kOrderCol));
  p->b_ok = true;
  S24_CSLT_CHECK(api_->DenseDescriptorInit(&handle_, &p->c, n_, m, n_, kAlignment, cuda_data_type(output_),
                                           cslt::kOrderCol));
  p->c_ok = true;
  const cslt::ComputeType compute = operand_ == DType::i8 ? cslt::kCompute32I : cslt::kCompute32F;
  S24_CSLT_CHECK(api_->MatmulDescriptorInit(&handle_, &p->matmul, cslt::kOpNonTranspose,
                                            cslt::kOpNonTranspose, &p->a, &p->b, &p->c, &p->c, compute));
  S24_CSLT_CHECK(api_->MatmulAlgSelectionInit(&handle_, &p->alg, &p->matmul, cslt::kMatmulAlgDefault));
  p->alg_ok = true;
  S24_CSLT_CHECK(api_->MatmulPlanInit(&handle_, &p->plan, &p->matmul, &p->alg));
  p->plan_ok = true;

  size_t workspace_bytes = 0;
  S24_CSLT_CHECK(api_->MatmulGetWorkspace(&handle_, &p->plan, &workspace_bytes));
  p->workspace = DeviceBuffer(workspace_bytes);
  const float alpha = 1.0f, beta = 0.0f;  // cuSPARSELt scales are f32 for every compute type
  cudaStream_t streams[1] = {stream};
  S24_CSLT_CHECK(api_->MatmulSearch(&handle_, &p->plan, &alpha, compressed_.get(), x, &beta, y, y,
                                    p->workspace.get(), streams, 1));
  // The chosen algorithm may want a different workspace than the default one.
  S24_CSLT_CHECK(api_->MatmulGetWorkspace(&handle_, &p->plan, &workspace_bytes));
  if (workspace_bytes > p->workspace.size()) {
    S24_CUDA_CHECK(cudaStreamSynchronize(stream));  // the search may still be using the old workspace
    p->workspace = DeviceBuffer(workspace_bytes);
  }
  plans_.emplace(m, std::move(p));
}

void CusparseltGemm::run(int64_t m, const void* x, void* y, cudaStream_t stream) {
  if (m <= 0) return;
  auto it = plans_.find(m);
  if (it == plans_.end()) {
    prepare(m, x, y, stream);
    it = plans_.find(m);
  }
  const float alpha = 1.0f, beta = 0.0f;
  cudaStream_t streams[1] = {stream};
  S24_CSLT_CHECK(api_->Matmul(&handle_, &it->second->plan, &alpha, compressed_.get(), x, &beta, y, y,
                              it->second->workspace.get(), streams, 1));
}

}  // namespace sparse24::cuda
