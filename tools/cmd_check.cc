// sparse24 check: which weights are eligible for 2:4, how far each already follows it, and what it would
// weigh compressed.
#include <fmt/format.h>

#include <cmath>

#include "format/pattern24.h"
#include "graph/onnx_io.h"
#include "graph/weights.h"
#include "tools/cli_util.h"
#include "util/error.h"

namespace sparse24::cli {

namespace {

struct CheckArgs {
  std::string model;
  std::string json;
};

// Compressed size as the GPU stores it: f16 values [N][K/2] plus one 4-bit nibble per group of 4.
int64_t compressed_f16_bytes(const WeightSite& s) {
  return s.params() / 2 * 2 + s.params() / 8;
}

void run_check(const CheckArgs& a) {
  OnnxModel model = load_onnx(a.model);
  const onnx::GraphProto& graph = model.proto.graph();
  std::vector<WeightSite> sites = find_weight_sites(graph);
  if (sites.empty()) fail("'{}': no weight-bearing node (Gemm, MatMul, Conv) in the graph", a.model);

  Table table(
      {"node", "op", "weight", "N x K", "2:4 eligible", "2:4 groups", "params", "dense", "2:4 (f16)"});
  nlohmann::json layers = nlohmann::json::array();
  int64_t params = 0, eligible_params = 0, dense = 0, eligible_dense = 0, compressed = 0, n_eligible = 0,
          n_24 = 0;
  for (const WeightSite& s : sites) {
    std::optional<double> fraction;
    int64_t dense_bytes = 0;
    if (const auto* init = find_initializer(graph, s.weight)) {
      size_t es = dtype_from_onnx(s.onnx_type) ? dtype_size(*dtype_from_onnx(s.onnx_type)) : 0;
      dense_bytes = int64_t(es) * s.params();
      if (s.eligible) {
        Tensor canon = to_canonical(read_tensor(*init), s);
        for (int64_t i = 0; i < canon.numel(); ++i)
          if (!std::isfinite(canon.get(i)))
            fail("weight '{}' of node '{}' contains {} (element {}); fix the model first", s.weight, s.node,
                 canon.get(i), i);
        fraction = check_24(canon).fraction();
      }
    }
    int64_t comp = s.eligible ? compressed_f16_bytes(s) : 0;
    params += s.params();
    dense += dense_bytes;
    if (s.eligible) {
      ++n_eligible;
      eligible_params += s.params();
      eligible_dense += dense_bytes;
      compressed += comp;
      n_24 += *fraction == 1.0;
    }
    table.add({s.node, s.op, s.weight, s.N ? fmt::format("{} x {}", s.N, s.K) : "?",
               s.eligible ? "yes" : "no: " + s.reason, fraction ? fmt::format("{:.4f}", *fraction) : "-",
               human_count(double(s.params())), dense_bytes ? human_bytes(double(dense_bytes)) : "-",
               s.eligible ? human_bytes(double(comp)) : "-"});
    nlohmann::json row = {{"node", s.node},
                          {"op", s.op},
                          {"weight", s.weight},
                          {"n", s.N},
                          {"k", s.K},
                          {"batch", s.batch},
                          {"eligible", s.eligible},
                          {"reason", s.reason},
                          {"fraction_24", fraction ? nlohmann::json(*fraction) : nlohmann::json(nullptr)},
                          {"params", s.params()},
                          {"dense_bytes", dense_bytes},
                          {"compressed_bytes", comp}};
    layers.push_back(row);
  }
  table.add_footer({fmt::format("total: {} layers", sites.size()), "", "", "",
                    fmt::format("{} eligible", n_eligible), fmt::format("{} already 2:4", n_24),
                    human_count(double(params)), human_bytes(double(dense)),
                    human_bytes(double(compressed))});
  fmt::print("{}\n", a.model);
  table.print();
  if (n_eligible)
    fmt::print("eligible layers: {} of the weights, {} dense -> {} as 2:4 f16 values + metadata\n",
               human_count(double(eligible_params)), human_bytes(double(eligible_dense)),
               human_bytes(double(compressed)));
  if (!a.json.empty()) {
    nlohmann::json j = {{"model", a.model},
                        {"layers", layers},
                        {"totals",
                         {{"layers", sites.size()},
                          {"eligible", n_eligible},
                          {"already_24", n_24},
                          {"params", params},
                          {"eligible_params", eligible_params},
                          {"dense_bytes", dense},
                          {"eligible_dense_bytes", eligible_dense},
                          {"compressed_bytes", compressed}}}};
    write_json(a.json, j);
  }
}

}  // namespace

void add_check_command(CLI::App& app) {
  auto args = std::make_shared<CheckArgs>();
  CLI::App* cmd = app.add_subcommand(
      "check",
      "Report every Gemm/MatMul/Conv weight: eligible for 2:4 or why not, fraction of 2:4 groups, sizes.");
  cmd->add_option("model", args->model, "ONNX model to inspect")->required();
  cmd->add_option("--json", args->json, "also write the report as JSON to this file");
  cmd->callback([args] { run_check(*args); });
}

}  // namespace sparse24::cli
