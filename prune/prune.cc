#include "prune/prune.h"

#include <cmath>
#include <map>
#include <regex>

#include "format/pattern24.h"
#include "util/error.h"

namespace sparse24 {

std::vector<std::string> prune_methods() {
  return {"magnitude"};
}

static std::regex compile_regex(const std::string& pattern, const char* option) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    fail("{} '{}' is not a valid regular expression: {}", option, pattern, e.what());
  }
}

// Share of the weight's L1 and L2 norm that the mask keeps.
static std::pair<double, double> norms_kept(const Tensor& w, const Mask24& mask) {
  double l1 = 0, l1k = 0, l2 = 0, l2k = 0;
  for (int64_t r = 0; r < mask.rows; ++r)
    for (int64_t c = 0; c < mask.cols; ++c) {
      double v = w.get(r * mask.cols + c);
      l1 += std::fabs(v);
      l2 += v * v;
      if (mask.keeps(r, c)) {
        l1k += std::fabs(v);
        l2k += v * v;
      }
    }
  return {l1 > 0 ? l1k / l1 : 1.0, l2 > 0 ? std::sqrt(l2k / l2) : 1.0};
}

std::vector<PruneRecord> prune_model(OnnxModel& model, const PruneOptions& options) {
  auto methods = prune_methods();
  if (std::find(methods.begin(), methods.end(), options.method) == methods.end())
    fail("unknown pruning method '{}' (available: magnitude)", options.method);
  std::optional<std::regex> include, exclude;
  if (!options.include.empty()) include = compile_regex(options.include, "--include");
  if (!options.exclude.empty()) exclude = compile_regex(options.exclude, "--exclude");

  onnx::GraphProto& graph = *model.proto.mutable_graph();
  std::vector<PruneRecord> records;
  std::map<std::string, size_t>
      done;  // weight name -> record that pruned it (a weight may feed several nodes)
  for (WeightSite& site : find_weight_sites(graph)) {
    PruneRecord rec;
    rec.site = site;
    auto matches = [&](const std::regex& re) {
      return std::regex_search(site.node, re) || std::regex_search(site.weight, re);
    };
    if (!site.eligible) {
      rec.note = site.reason;
    } else if (include && !matches(*include)) {
      rec.note = "not selected by --include";
    } else if (exclude && matches(*exclude)) {
      rec.note = "excluded by --exclude";
    } else if (auto it = done.find(site.weight); it != done.end()) {
      rec = records[it->second];
      rec.site = site;
      rec.note = "shared weight, pruned once";
    } else {
      onnx::TensorProto& init = *find_initializer(graph, site.weight);
      Tensor canon = to_canonical(read_tensor(init), site);
      std::string label = fmt::format("weight '{}' of node '{}'", site.weight, site.node);
      rec.fraction_before = check_24(canon).fraction();
      Mask24 mask = magnitude_mask(canon, label);
      std::tie(rec.l1_kept, rec.l2_kept) = norms_kept(canon, mask);
      apply_mask(canon, mask);
      write_tensor(init, from_canonical(canon, site));
      rec.pruned = true;
      done[site.weight] = records.size();
    }
    records.push_back(std::move(rec));
  }
  if (done.empty()) {
    std::string why = records.empty() ? "it has no Gemm, MatMul or Conv node" : "";
    for (const auto& r : records)
      why += fmt::format("{}{}: {}", why.empty() ? "" : "; ", r.site.node, r.note);
    fail("'{}': no eligible layer to prune ({})", model.path.string(), why);
  }
  return records;
}

}  // namespace sparse24
