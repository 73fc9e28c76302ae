// Label pooling arithmetic shared by the CPU and the CUDA backend.
//
// Everything numeric that decides a target lives here, compiled both by the host compiler
// (CPU operator, and therefore the CPU test-suite) and by nvcc (the kernel), so that the
// tests run on CI machines without a GPU still exercise the arithmetic the GPU executes.
//
// What is computed (torchvision.ops.roi_align, aligned=False, output 1x1, sampling_ratio=-1,
// spatial_scale=1, on the dense map D[c, r, k-class] that is zero outside the stored top-k):
// a 1x1 RoIAlign is an average of bilinear samples on a regular grid, and both the grid and the
// bilinear kernel factor into a y part and an x part. So the weight of map cell (r, c) is
// row_w[r] * col_w[c], and the pooled logit of class j is
//     z[j] = sum over stored (r, c, k) with class[r, c, k] == j of row_w[r] * col_w[c] * score[r, c, k]
// which touches only the H*W*K stored entries, never a dense [C, H, W] map.
#pragma once

#include <math.h>

#if defined(__CUDACC__)
#define RELABEL_HD __host__ __device__ __forceinline__
#else
#define RELABEL_HD inline
#endif

namespace dali_relabel {

/// Inclusive index range [first, last] of the nonzero weights on one axis (first > last: none).
struct AxisSpan {
  int first;
  int last;
};

/// RoIAlign 1x1 weights along one axis of a map with `size` cells.
///
/// `rel_lo`, `rel_hi` are the crop's normalized corners on this axis (0 = image start,
/// 1 = image end). They become map pixel coordinates `rel * size - 0.5` (the convention of
/// relabel_imagenet: cell centres at integer coordinates). Weights are written to
/// `w[0 .. size)` and sum to at most 1 (less when samples fall outside the map).
///
/// The operation order mirrors torchvision's CPU/CUDA kernel in double precision, so that the
/// number of sample points (a ceil of the box extent) is the same as torchvision's in float64
/// even for extents that land exactly on an integer.
RELABEL_HD AxisSpan roi_align_axis_weights(double rel_lo, double rel_hi, int size, double *w) {
  const double lo = rel_lo * size - 0.5;
  const double hi = rel_hi * size - 0.5;
  double extent = hi - lo;
  if (extent < 1.0) extent = 1.0;           // aligned=False: a RoI is at least one cell wide
  const int grid = static_cast<int>(ceil(extent));  // sampling_ratio=-1: ceil(extent / 1)
  for (int i = 0; i < size; ++i) w[i] = 0.0;
  AxisSpan span{size, -1};
  for (int i = 0; i < grid; ++i) {
    double p = lo + (i + 0.5) * extent / grid;
    if (p < -1.0 || p > size) continue;     // a sample beyond one cell outside the map adds 0
    if (p <= 0) p = 0;
    int low = static_cast<int>(p);
    int high;
    if (low >= size - 1) {                  // clamp to the last cell
      low = high = size - 1;
      p = low;
    } else {
      high = low + 1;
    }
    const double frac = p - low;
    w[low] += 1.0 - frac;
    w[high] += frac;
    if (low < span.first) span.first = low;
    if (high > span.last) span.last = high;
  }
  for (int i = span.first; i <= span.last; ++i) w[i] /= grid;  // average over the sample grid
  return span;
}

/// The crop box of one sample in normalized image coordinates, rows (y) and columns (x).
struct NormBox {
  double y0, x0, y1, x1;
};

/// Contribution of one stored entry to its class's pooled logit.
RELABEL_HD double entry_contribution(double row_w, double col_w, float score) {
  return row_w * col_w * static_cast<double>(score);
}

/// Softmax numerator exp((z - z_max) / T) in float. z_max is the maximum logit over all
/// classes (including the implicit zeros), so the argument is <= 0 and exp never overflows.
RELABEL_HD float softmax_numerator(double z, double z_max, float inv_temperature) {
  return expf(static_cast<float>(z - z_max) * inv_temperature);
}

/// Validity of a stored entry; invalid entries are reported (CPU) or flagged (GPU).
RELABEL_HD bool class_in_range(int cls, int num_classes) {
  return cls >= 0 && cls < num_classes;
}

RELABEL_HD bool score_is_finite(float s) {
  return isfinite(s);
}

}  // namespace dali_relabel
