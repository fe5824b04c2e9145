#pragma once
// A one-line progress bar on stderr for long runs: epoch, step, running loss and accuracy, time left.
// Drawn only when asked (a terminal, or --progress), so that logs and test output stay clean.
#include <chrono>
#include <cstdint>
#include <string>

namespace sparse24::train {

/// True when stderr is a terminal.
bool stderr_is_terminal();

/// A progress line redrawn in place.
class Progress {
 public:
  /// `label` leads the line ("epoch 2/5"); `total` steps make 100%.
  Progress(bool enabled, std::string label, int64_t total);
  ~Progress();
  /// Redraws (at most ten times a second, and always at the last step) with `stats` after the bar.
  void update(int64_t done, const std::string& stats);
  /// Ends the line.
  void finish();

 private:
  bool enabled_;
  std::string label_;
  int64_t total_;
  bool open_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace sparse24::train
