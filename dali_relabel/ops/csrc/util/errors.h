// Error reporting for dali_relabel operators.
//
// Messages are meant for the person running a training script: they start with the operator
// name, name the sample index, say what was wrong and what to do. We throw
// std::invalid_argument rather than DALI_FAIL so the text is not buried under a C++ file/line
// prefix and a stack trace; DALI wraps it with the operator's Python call site.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

#include "dali/core/tensor_shape.h"

namespace dali_relabel {

template <typename... Args>
[[noreturn]] void Fail(const char *op, const Args &...args) {
  std::ostringstream ss;
  ss << op << ": ";
  (ss << ... << args);
  throw std::invalid_argument(ss.str());
}

template <typename Shape>
std::string ShapeStr(const Shape &shape) {
  std::ostringstream ss;
  ss << "[";
  for (int d = 0; d < shape.sample_dim(); ++d) ss << (d ? ", " : "") << shape[d];
  ss << "]";
  return ss.str();
}

}  // namespace dali_relabel
