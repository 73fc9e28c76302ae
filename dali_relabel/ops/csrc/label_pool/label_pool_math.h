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
//
// Two geometries (how the box becomes the sample grid and the bilinear weights):
// * default: in float64, from the float32 corners (documented semantics: torchvision's roi_align
//   on a float64 map and box);
// * official (transpose_box=True): exactly as relabel_imagenet computes it, in float32: the box
//   `coords.float() * W - 0.5` (two float32 tensor ops), then torchvision's float32 kernel
//   (roi_start, roi_extent = max(end - start, 1), bin size, sample count ceil(extent / 1), sample
//   positions, bilinear fractions), step by step in the same order, each step rounded to float32.
//   Only the accumulation of the weighted scores differs (float64 here), which moves a target by
//   ~1e-7, while a float64 geometry can change the sample count (a box spanning exactly six cells
//   is 6.0 in float32 but 6.0000005 in float64: 7 samples instead of 6, up to ~1e-3 in a target).
// Float32 steps are spelled with the f32_* helpers: on the device they are the _rn intrinsics,
// which nvcc never fuses into an FMA whatever --fmad says (a fused `a * b - c` rounds once where
// PyTorch's two tensor ops round twice; the plugin is built with --fmad=false besides); on the
// host the plugin is compiled in ISO C++ mode (-std=c++20), where g++ does not contract
// floating-point expressions either.
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

// --- float32 steps, rounded exactly as separate float32 operations ----------------------------
RELABEL_HD float f32_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
RELABEL_HD float f32_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
RELABEL_HD float f32_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
RELABEL_HD float f32_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

/// The official geometry (transpose_box=True): RoIAlign 1x1 weights along one axis, computed as
/// relabel_imagenet + torchvision compute them in float32 (see the top of this file).
///
/// `rel_lo`, `rel_hi`: the float32 corners the official code holds on this axis (after its axis
/// swap). `scale`: what it multiplies them by, the map width W (label_maps.size(3)) on both axes.
/// `size`: the cells on this axis (H for rows, W for columns), which bound the bilinear samples.
/// Weights are written to `w[0 .. size)` (float64, the float32 fractions summed and averaged).
RELABEL_HD AxisSpan roi_align_axis_weights_official(float rel_lo, float rel_hi, int scale, int size, double *w) {
  // relabel_imagenet: boxes = coords.float() * label_maps.size(3) - 0.5 (a multiply, then a subtract).
  const float start = f32_sub(f32_mul(rel_lo, static_cast<float>(scale)), 0.5f);
  const float end = f32_sub(f32_mul(rel_hi, static_cast<float>(scale)), 0.5f);
  // torchvision, aligned=False, spatial_scale=1: roi_start = start * 1 - 0 = start (exact);
  // roi_extent = max(end - start, 1); bin = extent / pooled (pooled = 1: exact).
  float extent = f32_sub(end, start);
  if (extent < 1.0f) extent = 1.0f;
  const float bin = f32_div(extent, 1.0f);
  const int grid = static_cast<int>(ceilf(f32_div(bin, 1.0f)));  // sampling_ratio=-1: ceil(extent / pooled)
  const float grid_f = static_cast<float>(grid);
  for (int i = 0; i < size; ++i) w[i] = 0.0;
  AxisSpan span{size, -1};
  for (int i = 0; i < grid; ++i) {
    // y = roi_start + ph * bin + (iy + .5f) * bin / grid, with ph = 0 (ph * bin = +0, start + 0 = start).
    float p = f32_add(start, f32_div(f32_mul(static_cast<float>(i) + 0.5f, bin), grid_f));
    if (p < -1.0f || p > static_cast<float>(size)) continue;
    if (p <= 0.0f) p = 0.0f;
    int low = static_cast<int>(p);
    int high;
    if (low >= size - 1) {
      low = high = size - 1;
      p = static_cast<float>(low);
    } else {
      high = low + 1;
    }
    const float frac = f32_sub(p, static_cast<float>(low));  // ly (exact)
    const float rest = f32_sub(1.0f, frac);                    // hy = 1. - ly, rounded to float32
    w[low] += rest;
    w[high] += frac;
    if (low < span.first) span.first = low;
    if (high > span.last) span.last = high;
  }
  for (int i = span.first; i <= span.last; ++i) w[i] /= grid;  // torchvision: output /= count
  return span;
}

/// The crop box of one sample in normalized image coordinates, rows (y) and columns (x), as the
/// operator received them (float32 values, held exactly in double). `official`: pool it with the
/// official float32 geometry (the box is then already swapped as the official code swaps it).
struct NormBox {
  double y0, x0, y1, x1;
  bool official = false;
};

/// The RoIAlign weights of one box along the rows (`rows`) or the columns of an h x w map.
RELABEL_HD AxisSpan box_axis_weights(const NormBox &box, bool rows, int h, int w, double *out) {
  if (box.official)  // relabel_imagenet scales both axes by the map width
    return rows ? roi_align_axis_weights_official(static_cast<float>(box.y0), static_cast<float>(box.y1), w, h, out)
                : roi_align_axis_weights_official(static_cast<float>(box.x0), static_cast<float>(box.x1), w, w, out);
  return rows ? roi_align_axis_weights(box.y0, box.y1, h, out) : roi_align_axis_weights(box.x0, box.x1, w, out);
}

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
