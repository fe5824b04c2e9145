#pragma once
// Output files are written to a temporary sibling and renamed into place, so a reader never sees a
// partial file and a failed run leaves nothing behind.
#include <filesystem>
#include <functional>
#include <ostream>

namespace sparse24 {

/// Calls write(stream) on a temporary file next to `path`, then renames it to `path`.
/// On any failure the temporary file is removed and Error is thrown naming `path`.
void write_file_atomically(const std::filesystem::path& path,
                           const std::function<void(std::ostream&)>& write);

/// Throws Error unless `out` may be written: not the same file as `in`, its folder exists.
void check_output_path(const std::filesystem::path& in, const std::filesystem::path& out);

}  // namespace sparse24
