#pragma once
// Small helpers the CLI commands share: aligned tables, sizes, JSON files.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sparse24::cli {

/// A text table: columns sized to their widest cell, numbers right-aligned.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  /// A rule then this row, for totals.
  void add_footer(std::vector<std::string> row) { footer_ = std::move(row); }
  void print(std::FILE* out = stdout) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
  std::vector<std::string> footer_;
};

/// "1.5 MiB", "312 B".
std::string human_bytes(double bytes);
/// "22.7M", "1.2k".
std::string human_count(double n);

/// Writes JSON (indented) to a file atomically.
void write_json(const std::filesystem::path& path, const nlohmann::json& j);

/// Each sparse24 command registers itself on the app through one of these.
void add_check_command(CLI::App& app);
void add_prune_command(CLI::App& app);
/// build, run and bench MODEL (the engine); registers the `bench` command that bench gemm attaches to.
void add_engine_commands(CLI::App& app);
/// bench gemm: the 2:4 kernels against dense BLAS.
void add_bench_gemm_command(CLI::App& app);
/// train, finetune and eval (training and accuracy).
void add_train_commands(CLI::App& app);

}  // namespace sparse24::cli
