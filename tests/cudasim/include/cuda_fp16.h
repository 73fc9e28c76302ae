// cudasim's __half: IEEE binary16 through the compiler's _Float16 (round to nearest even, as
// the GPU's conversions). Only what kernels use to read and write half values.
#pragma once

#include "cuda_runtime.h"

struct __half {
  _Float16 value;
  __half() = default;
  __half(float f) : value(static_cast<_Float16>(f)) {}  // NOLINT: implicit, as in CUDA
  operator float() const { return static_cast<float>(value); }  // NOLINT
};
static_assert(sizeof(__half) == 2);

inline float __half2float(__half h) { return static_cast<float>(h.value); }
inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
