#pragma once
// The one oneDNN CPU engine and stream every oneDNN primitive of sparse24 runs on.
#include <dnnl.hpp>

namespace sparse24::engine {

/// The process-wide oneDNN CPU engine.
inline dnnl::engine& onednn_engine() {
  static dnnl::engine e{dnnl::engine::kind::cpu, 0};
  return e;
}

/// The stream primitives are executed on (in-order; callers wait before reading results).
inline dnnl::stream& onednn_stream() {
  static dnnl::stream s{onednn_engine()};
  return s;
}

}  // namespace sparse24::engine
