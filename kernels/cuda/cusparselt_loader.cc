#include <dlfcn.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/cuda/cusparselt_api.h"

namespace sparse24::cuda::cslt {

namespace {

struct Loaded {
  Api api{};
  bool ok = false;
  std::string error;
};

template <typename Fn>
bool resolve(void* lib, const char* name, Fn& out, std::string& error) {
  out = reinterpret_cast<Fn>(dlsym(lib, name));
  if (!out) error = std::string("libcusparseLt has no symbol ") + name + " (is it older than 0.8?)";
  return out != nullptr;
}

Loaded load() {
  Loaded r;
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("SPARSE24_CUSPARSELT_LIB"); env && *env) candidates.emplace_back(env);
  candidates.emplace_back("libcusparseLt.so.0");
#ifdef SPARSE24_CUSPARSELT_DEFAULT_LIB
  candidates.emplace_back(SPARSE24_CUSPARSELT_DEFAULT_LIB);
#endif
  void* lib = nullptr;
  std::string tried;
  for (const std::string& c : candidates) {
    // Kept open for the life of the process: plans and handles point into it.
    lib = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib) break;
    const char* why = dlerror();
    tried += (tried.empty() ? "" : "; ") + c + ": " + (why ? why : "not found");
  }
  if (!lib) {
    r.error = "cuSPARSELt not loaded (set SPARSE24_CUSPARSELT_LIB or LD_LIBRARY_PATH) — tried " + tried;
    return r;
  }
  Api& a = r.api;
  std::string& e = r.error;
  bool ok = resolve(lib, "cusparseLtGetProperty", a.GetProperty, e) &&
            resolve(lib, "cusparseLtGetErrorString", a.GetErrorString, e) &&
            resolve(lib, "cusparseLtInit", a.Init, e) && resolve(lib, "cusparseLtDestroy", a.Destroy, e) &&
            resolve(lib, "cusparseLtGetVersion", a.GetVersion, e) &&
            resolve(lib, "cusparseLtDenseDescriptorInit", a.DenseDescriptorInit, e) &&
            resolve(lib, "cusparseLtStructuredDescriptorInit", a.StructuredDescriptorInit, e) &&
            resolve(lib, "cusparseLtMatDescriptorDestroy", a.MatDescriptorDestroy, e) &&
            resolve(lib, "cusparseLtMatmulDescriptorInit", a.MatmulDescriptorInit, e) &&
            resolve(lib, "cusparseLtMatmulAlgSelectionInit", a.MatmulAlgSelectionInit, e) &&
            resolve(lib, "cusparseLtMatmulAlgSelectionDestroy", a.MatmulAlgSelectionDestroy, e) &&
            resolve(lib, "cusparseLtMatmulAlgSetAttribute", a.MatmulAlgSetAttribute, e) &&
            resolve(lib, "cusparseLtMatmulPlanInit", a.MatmulPlanInit, e) &&
            resolve(lib, "cusparseLtMatmulPlanDestroy", a.MatmulPlanDestroy, e) &&
            resolve(lib, "cusparseLtMatmulGetWorkspace", a.MatmulGetWorkspace, e) &&
            resolve(lib, "cusparseLtMatmul", a.Matmul, e) &&
            resolve(lib, "cusparseLtMatmulSearch", a.MatmulSearch, e) &&
            resolve(lib, "cusparseLtSpMMACompressedSize2", a.SpMMACompressedSize2, e) &&
            resolve(lib, "cusparseLtSpMMACompress2", a.SpMMACompress2, e) &&
            resolve(lib, "cusparseLtSpMMAPruneCheck2", a.SpMMAPruneCheck2, e);
  if (!ok) return r;
  int major = 0, minor = 0, patch = 0;
  if (a.GetProperty(MAJOR_VERSION, &major) != kSuccess || a.GetProperty(MINOR_VERSION, &minor) != kSuccess ||
      a.GetProperty(PATCH_LEVEL, &patch) != kSuccess) {
    e = "cusparseLtGetProperty failed: cannot tell the cuSPARSELt version";
    return r;
  }
  a.version = major * 1000 + minor * 100 + patch;
  if (a.version < kMinVersion) {
    e = "cuSPARSELt " + std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch) +
        " is older than 0.8.0, the API sparse24 is written against";
    return r;
  }
  r.ok = true;
  return r;
}

}  // namespace

const Api* load_api(std::string* why_not) {
  static const Loaded loaded = load();  // thread-safe, once per process
  if (!loaded.ok) {
    if (why_not) *why_not = loaded.error;
    return nullptr;
  }
  return &loaded.api;
}

}  // namespace sparse24::cuda::cslt
