#pragma once
// The .plan file: a compiled model saved so that it loads without re-planning. Layout:
//   magic "S24PLAN\0" | u32 format version | u32 0 | u64 payload bytes | u64 FNV-1a checksum of the payload
//   | payload (graph, constants, each linear layer's tactic and weight: 2:4 layers compressed)
// Loading checks all of it, and refuses a plan whose kernels need an ISA this run cannot use.
#include <filesystem>

#include "engine/planner.h"

namespace sparse24::engine {

/// Current format version; older or newer files are refused. 2: the dense-direct tactic and fused pools; 3:
/// each 2:4 layer's timed kernel; 4: channels-last AveragePool, Concat, Clip and depthwise Conv nodes with
/// their fused activation (an older sparse24 would run them as channels-first); 5: channels-last depthwise
/// Conv nodes hold their weight by tap (DepthwiseConvNode) instead of reading it as an input, and a layer's
/// epilogue may be ReLU6.
constexpr uint32_t kPlanVersion = 5;

/// Writes a compiled model atomically.
void save_plan(const CompiledModel& model, const std::filesystem::path& path);

/// Reads and validates a plan (Error names the file and what is wrong: truncated, checksum, version, ISA).
CompiledModel load_plan(const std::filesystem::path& path);

/// True when the file starts with the plan magic.
bool is_plan_file(const std::filesystem::path& path);

}  // namespace sparse24::engine

namespace sparse24::engine {

/// A runnable model from an .onnx file (imported, optimized and planned with `options`) or a .plan file
/// (loaded as planned; only options.threads applies).
CompiledModel load_model(const std::filesystem::path& path, const PlanOptions& options);

}  // namespace sparse24::engine
