// Holds kernels/cuda/cusparselt_api.h (our declarations of the cuSPARSELt API, used through dlopen) to
// NVIDIA's cusparseLt.h: built only when configure found that header, and every check is a static_assert,
// so a drifting declaration fails the build. At run time it also loads the library configure found and checks
// its version.
#include <cusparseLt.h>

#include <cstdio>
#include <type_traits>

#include "check.h"
#include "kernels/cuda/cusparselt_api.h"

namespace cslt = sparse24::cuda::cslt;

namespace {

// Two parameter (or return) types are interchangeable across the C ABI: same size and kind, and for pointers
// the same constness and pointee size/alignment (void* only with void*).
template <typename A, typename B>
constexpr bool same_abi() {
  if constexpr (std::is_pointer_v<A> || std::is_pointer_v<B>) {
    if constexpr (!(std::is_pointer_v<A> && std::is_pointer_v<B>)) {
      return false;
    } else {
      using PA = std::remove_pointer_t<A>;
      using PB = std::remove_pointer_t<B>;
      if constexpr (std::is_same_v<PA, PB>)  // also the incomplete ones, such as CUstream_st
        return true;
      else if constexpr (std::is_void_v<std::remove_cv_t<PA>> || std::is_void_v<std::remove_cv_t<PB>>)
        return false;
      else
        return std::is_const_v<PA> == std::is_const_v<PB> && sizeof(PA) == sizeof(PB) &&
               alignof(PA) == alignof(PB) && std::is_pointer_v<PA> == std::is_pointer_v<PB>;
    }
  } else {
    return sizeof(A) == sizeof(B) && std::is_floating_point_v<A> == std::is_floating_point_v<B> &&
           (std::is_integral_v<A> || std::is_enum_v<A>) == (std::is_integral_v<B> || std::is_enum_v<B>);
  }
}

template <typename Ours, typename Theirs>
struct SameSignature : std::false_type {};
template <typename R1, typename... A1, typename R2, typename... A2>
struct SameSignature<R1 (*)(A1...), R2 (*)(A2...)>
    : std::bool_constant<sizeof...(A1) == sizeof...(A2) && same_abi<R1, R2>() &&
                         (same_abi<A1, A2>() && ...)> {};

// `ours` is pasted after `cslt::`: a name, which parentheses would break.
#define S24_SAME_SIGNATURE(ours, theirs) /* NOLINTNEXTLINE(bugprone-macro-parentheses) */ \
  static_assert(SameSignature<cslt::ours, decltype(&theirs)>::value, #ours " does not match " #theirs)

S24_SAME_SIGNATURE(GetPropertyFn, cusparseLtGetProperty);
S24_SAME_SIGNATURE(GetErrorStringFn, cusparseLtGetErrorString);
S24_SAME_SIGNATURE(InitFn, cusparseLtInit);
S24_SAME_SIGNATURE(DestroyFn, cusparseLtDestroy);
S24_SAME_SIGNATURE(GetVersionFn, cusparseLtGetVersion);
S24_SAME_SIGNATURE(DenseDescriptorInitFn, cusparseLtDenseDescriptorInit);
S24_SAME_SIGNATURE(StructuredDescriptorInitFn, cusparseLtStructuredDescriptorInit);
S24_SAME_SIGNATURE(MatDescriptorDestroyFn, cusparseLtMatDescriptorDestroy);
S24_SAME_SIGNATURE(MatmulDescriptorInitFn, cusparseLtMatmulDescriptorInit);
S24_SAME_SIGNATURE(MatmulAlgSelectionInitFn, cusparseLtMatmulAlgSelectionInit);
S24_SAME_SIGNATURE(MatmulAlgSelectionDestroyFn, cusparseLtMatmulAlgSelectionDestroy);
S24_SAME_SIGNATURE(MatmulAlgSetAttributeFn, cusparseLtMatmulAlgSetAttribute);
S24_SAME_SIGNATURE(MatmulPlanInitFn, cusparseLtMatmulPlanInit);
S24_SAME_SIGNATURE(MatmulPlanDestroyFn, cusparseLtMatmulPlanDestroy);
S24_SAME_SIGNATURE(MatmulGetWorkspaceFn, cusparseLtMatmulGetWorkspace);
S24_SAME_SIGNATURE(MatmulFn, cusparseLtMatmul);
S24_SAME_SIGNATURE(MatmulSearchFn, cusparseLtMatmulSearch);
S24_SAME_SIGNATURE(CompressedSize2Fn, cusparseLtSpMMACompressedSize2);
S24_SAME_SIGNATURE(Compress2Fn, cusparseLtSpMMACompress2);
S24_SAME_SIGNATURE(PruneCheck2Fn, cusparseLtSpMMAPruneCheck2);

// Opaque objects: size and alignment.
#define S24_SAME_OBJECT(ours, theirs)                                                           \
  static_assert(sizeof(cslt::ours) == sizeof(theirs) && alignof(cslt::ours) == alignof(theirs), \
                #ours " does not match " #theirs)
S24_SAME_OBJECT(Handle, cusparseLtHandle_t);
S24_SAME_OBJECT(MatDescriptor, cusparseLtMatDescriptor_t);
S24_SAME_OBJECT(MatmulDescriptor, cusparseLtMatmulDescriptor_t);
S24_SAME_OBJECT(AlgSelection, cusparseLtMatmulAlgSelection_t);
S24_SAME_OBJECT(MatmulPlan, cusparseLtMatmulPlan_t);

// Enum values and sizes.
#define S24_SAME_ENUM(ours, theirs)                                                           \
  static_assert(int(cslt::ours) == int(theirs) && sizeof(cslt::ours) == sizeof(theirs), #ours \
                " !="                                                                         \
                " " #theirs)
S24_SAME_ENUM(kSuccess, CUSPARSE_STATUS_SUCCESS);
S24_SAME_ENUM(kOrderCol, CUSPARSE_ORDER_COL);
S24_SAME_ENUM(kOrderRow, CUSPARSE_ORDER_ROW);
S24_SAME_ENUM(kOpNonTranspose, CUSPARSE_OPERATION_NON_TRANSPOSE);
S24_SAME_ENUM(kOpTranspose, CUSPARSE_OPERATION_TRANSPOSE);
S24_SAME_ENUM(kSparsity50Percent, CUSPARSELT_SPARSITY_50_PERCENT);
S24_SAME_ENUM(kCompute32I, CUSPARSE_COMPUTE_32I);
S24_SAME_ENUM(kCompute16F, CUSPARSE_COMPUTE_16F);
S24_SAME_ENUM(kCompute32F, CUSPARSE_COMPUTE_32F);
S24_SAME_ENUM(kMatmulAlgDefault, CUSPARSELT_MATMUL_ALG_DEFAULT);
S24_SAME_ENUM(kAlgConfigId, CUSPARSELT_MATMUL_ALG_CONFIG_ID);
S24_SAME_ENUM(kAlgConfigMaxId, CUSPARSELT_MATMUL_ALG_CONFIG_MAX_ID);
S24_SAME_ENUM(kSearchIterations, CUSPARSELT_MATMUL_SEARCH_ITERATIONS);
static_assert(CUSPARSELT_VERSION >= cslt::kMinVersion, "the header found is older than the API we declare");

}  // namespace

int main() {
  std::printf("cusparselt_api.h matches cusparseLt.h %d.%d.%d (checked at compile time)\n",
              CUSPARSELT_VER_MAJOR, CUSPARSELT_VER_MINOR, CUSPARSELT_VER_PATCH);
#ifdef SPARSE24_CUSPARSELT_DEFAULT_LIB
  // Loading needs no GPU: the library resolves, and reports a version the header agrees with.
  std::string why;
  const cslt::Api* api = cslt::load_api(&why);
  CHECK(api != nullptr, "cannot load %s: %s", SPARSE24_CUSPARSELT_DEFAULT_LIB, why.c_str());
  if (api) {
    std::printf("loaded cuSPARSELt version %d\n", api->version);
    CHECK(api->version >= cslt::kMinVersion, "version %d", api->version);
    CHECK(api->version / 100 == CUSPARSELT_VERSION / 100, "library %d vs header %d", api->version,
          CUSPARSELT_VERSION);
  }
#else
  std::printf("no cuSPARSELt library found at configure time: load check skipped\n");
#endif
  return sparse24::test::test_exit_code("check_cusparselt_api");
}
