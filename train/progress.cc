#include "train/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace sparse24::train {

bool stderr_is_terminal() {
  return isatty(STDERR_FILENO) != 0;
}

Progress::Progress(bool enabled, std::string label, int64_t total)
    : enabled_(enabled), label_(std::move(label)), total_(total), start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() {
  finish();
}

void Progress::update(int64_t done, const std::string& stats) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (open_ && done < total_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double left = done > 0 ? elapsed * double(total_ - done) / double(done) : 0.0;
  constexpr int kWidth = 24;
  const int filled = total_ > 0 ? int(kWidth * done / total_) : kWidth;
  const int left_s = int(left + 0.5);
  fmt::print(stderr, "\r{} [{}{}] {}/{} {} {:02d}:{:02d} left\x1b[K", label_,
             std::string(size_t(filled), '='), std::string(size_t(kWidth - filled), ' '), done, total_, stats,
             left_s / 60, left_s % 60);
  std::fflush(stderr);
  open_ = true;
}

void Progress::finish() {
  if (!enabled_ || !open_) return;
  fmt::print(stderr, "\n");
  open_ = false;
}

}  // namespace sparse24::train
