// sparse24 prune: magnitude 2:4 on every eligible weight, written back as a standard ONNX model.
#include <fmt/format.h>

#include "graph/onnx_io.h"
#include "prune/prune.h"
#include "tools/cli_util.h"
#include "util/atomic_file.h"

namespace sparse24::cli {

namespace {

struct PruneArgs {
  std::string model, output, json;
  PruneOptions options;
};

void run_prune(const PruneArgs& a) {
  check_output_path(a.model, a.output);
  OnnxModel model = load_onnx(a.model);
  std::vector<PruneRecord> records = prune_model(model, a.options);

  Table table({"node", "op", "weight", "N x K", "result", "2:4 before", "L1 kept", "L2 kept"});
  nlohmann::json layers = nlohmann::json::array();
  int64_t pruned_params = 0, total_params = 0;
  int n_pruned = 0;
  for (const PruneRecord& r : records) {
    const WeightSite& s = r.site;
    total_params += s.params();
    bool counted = r.pruned && r.note.empty();
    if (counted) {
      ++n_pruned;
      pruned_params += s.params();
    }
    table.add({s.node, s.op, s.weight, s.N ? fmt::format("{} x {}", s.N, s.K) : "?",
               r.pruned ? (r.note.empty() ? "pruned" : r.note) : "skipped: " + r.note,
               r.pruned ? fmt::format("{:.4f}", r.fraction_before) : "-",
               r.pruned ? fmt::format("{:.4f}", r.l1_kept) : "-",
               r.pruned ? fmt::format("{:.4f}", r.l2_kept) : "-"});
    layers.push_back({{"node", s.node},
                      {"op", s.op},
                      {"weight", s.weight},
                      {"n", s.N},
                      {"k", s.K},
                      {"pruned", r.pruned},
                      {"note", r.note},
                      {"fraction_24_before", r.fraction_before},
                      {"l1_kept", r.l1_kept},
                      {"l2_kept", r.l2_kept}});
  }
  table.add_footer({fmt::format("total: {} layers", records.size()), "", "", "",
                    fmt::format("{} pruned", n_pruned), "", "", ""});
  save_onnx(model, a.output);
  fmt::print("{} -> {} ({} method)\n", a.model, a.output, a.options.method);
  table.print();
  fmt::print("pruned {} of {} weight parameters to 2:4 (half of them now zero)\n",
             human_count(double(pruned_params)), human_count(double(total_params)));
  if (!a.json.empty())
    write_json(a.json, {{"model", a.model},
                        {"output", a.output},
                        {"method", a.options.method},
                        {"layers", layers},
                        {"totals", {{"pruned_layers", n_pruned}, {"pruned_params", pruned_params}}}});
}

}  // namespace

void add_prune_command(CLI::App& app) {
  auto args = std::make_shared<PruneArgs>();
  CLI::App* cmd = app.add_subcommand(
      "prune", "Prune every eligible weight to 2:4 and write a standard ONNX model with the zeros in place.");
  cmd->add_option("model", args->model, "ONNX model to prune (never modified)")->required();
  cmd->add_option("-o,--output", args->output, "where to write the pruned ONNX model")->required();
  cmd->add_option("--method", args->options.method, "mask criterion: magnitude (keep the 2 largest |w| of 4)")
      ->capture_default_str();
  cmd->add_option("--include", args->options.include,
                  "only prune layers whose node or weight name matches this regex");
  cmd->add_option("--exclude", args->options.exclude,
                  "do not prune layers whose node or weight name matches");
  cmd->add_option("--json", args->json, "also write the per-layer report as JSON to this file");
  cmd->callback([args] { run_prune(*args); });
}

}  // namespace sparse24::cli
