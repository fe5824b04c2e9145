// The sparse24 command line. Every user error ends as one line on stderr and exit status 1.
#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "tools/cli_util.h"
#include "util/error.h"

int main(int argc, char** argv) {
  CLI::App app{"sparse24: 2:4 structured sparsity for ONNX models — check, prune, build, run, bench."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "sparse24 0.1");
  sparse24::cli::add_check_command(app);
  sparse24::cli::add_prune_command(app);
  sparse24::cli::add_engine_commands(app);
  sparse24::cli::add_bench_gemm_command(app);
  sparse24::cli::add_train_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "sparse24: error: {}\nRun with --help for usage.\n", e.what());
    return 1;
  } catch (const sparse24::Error& e) {
    fmt::print(stderr, "sparse24: error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "sparse24: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
