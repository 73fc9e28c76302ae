// cudasim's stand-in for dali/core/float16.h: a 2-byte IEEE half (the compiler's _Float16)
// that converts to and from float like dali::float16 does on host and device.
#pragma once

#include <cuda_fp16.h>

namespace dali {

struct float16 {
  _Float16 impl;
  float16() = default;
  float16(float x) : impl(static_cast<_Float16>(x)) {}   // NOLINT: implicit, as DALI's
  float16(double x) : impl(static_cast<_Float16>(x)) {}  // NOLINT
  float16(int x) : impl(static_cast<_Float16>(x)) {}     // NOLINT
  float16(__half x) : impl(x.value) {}                   // NOLINT
  operator float() const noexcept { return static_cast<float>(impl); }  // NOLINT
};
static_assert(sizeof(float16) == 2);

}  // namespace dali
