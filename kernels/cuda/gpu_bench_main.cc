// gpu_bench: cuBLAS vs cuSPARSELt vs sparse24 (mma.sp) 2:4 GEMM on the local GPU; JSON out. Plain C++ (no
// CLI library) so that it builds with nothing but the CUDA toolkit. `gpu_bench --help` lists the options.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gpu_gemm_bench.h"
#include "util/error.h"
#include "util/parse_int.h"

namespace {

constexpr const char* kUsage = R"(usage: gpu_bench [options]
  --json PATH        write the results as a JSON array to PATH (default: stdout only gets the table)
  --dtypes LIST      comma-separated operand types: f16,bf16,i8 (default: bf16,f16,i8)
  --m LIST           comma-separated activation rows M (default: 1,16,64,128,1024,4096,16384)
  --shapes LIST      comma-separated weight shapes NxK (default: the 11 model shapes of docs/gpu.md)
  --target-ms MS     kernel time each measurement accumulates (default 25)
  --warm-l2          do not flush L2 between timed calls
  --no-cusparselt    leave cuSPARSELt out
exit status: 0 done, 1 error, 77 no CUDA device (nothing measured))";

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sparse24;
  try {
    cuda::GpuGemmBenchOptions o;
    o.shapes = cuda::gpu_bench_model_shapes();
    o.ms = cuda::gpu_bench_model_ms();
    o.dtypes = {DType::bf16, DType::f16, DType::i8};
    std::string json_path;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) fail("{} needs a value", a);
        return argv[++i];
      };
      if (a == "--help" || a == "-h") {
        std::puts(kUsage);
        return 0;
      } else if (a == "--json") {
        json_path = value();
      } else if (a == "--dtypes") {
        o.dtypes.clear();
        for (const std::string& d : split(value())) o.dtypes.push_back(parse_dtype(d));
      } else if (a == "--m") {
        o.ms.clear();
        for (const std::string& m : split(value())) o.ms.push_back(parse_positive_int(m, "--m"));
      } else if (a == "--shapes") {
        o.shapes.clear();
        for (const std::string& s : split(value())) {
          size_t x = s.find('x');
          if (x == std::string::npos) fail("--shapes: '{}' is not NxK", s);
          o.shapes.emplace_back(parse_positive_int(s.substr(0, x), "--shapes N"),
                                parse_positive_int(s.substr(x + 1), "--shapes K"));
        }
      } else if (a == "--target-ms") {
        o.target_ms = double(parse_positive_int(value(), "--target-ms"));
      } else if (a == "--warm-l2") {
        o.cold_l2 = false;
      } else if (a == "--no-cusparselt") {
        o.cusparselt = false;
      } else {
        fail("unknown option '{}' (see --help)", a);
      }
    }
    std::string why;
    if (!cuda::cuda_device_available(&why)) {
      std::printf("no CUDA device: skipped (%s)\n", why.c_str());
      return 77;
    }
    o.log = [](const std::string& line) { std::printf("%s\n", line.c_str()), std::fflush(stdout); };
    // The JSON file is rewritten after every row: a run cut short by a time limit still leaves valid JSON.
    std::vector<cuda::GpuGemmBenchRow> written;
    auto write_json = [&] {
      if (json_path.empty()) return;
      std::ofstream out(json_path);
      out << cuda::gpu_gemm_bench_json(written);
      if (!out) fail("cannot write '{}'", json_path);
    };
    o.on_row = [&](const cuda::GpuGemmBenchRow& row) {
      written.push_back(row);
      write_json();
    };
    write_json();
    std::vector<cuda::GpuGemmBenchRow> rows = cuda::run_gpu_gemm_bench(o);
    int failed = 0;
    for (const auto& r : rows) failed += !r.error.empty();
    if (!json_path.empty()) std::printf("wrote %zu rows to %s\n", rows.size(), json_path.c_str());
    if (failed) std::printf("%d row(s) carry an error (see their \"error\" field)\n", failed);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_bench: %s\n", e.what());
    return 1;
  }
}
