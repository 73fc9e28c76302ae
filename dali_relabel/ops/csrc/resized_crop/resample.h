// Resampling a crop window to a fixed size with Pillow's exact arithmetic (fn.relabel.resized_crop).
//
// `Image.crop(box).resize(size, filter)` in Pillow (what torchvision's RandomResizedCrop does to a PIL
// image) is a separable resampling done in two passes over 8-bit pixels, the result of the first rounded
// and clipped to uint8 before the second. The weights of each output pixel are the filter, widened by the
// downscaling factor (antialiasing), evaluated in double, normalized to sum 1 and turned into 22-bit fixed
// point; sums start at half an LSB and are shifted back. Pillow >= 13 runs the vertical pass first when
// the height shrinks by more than twice as many pixels as the width (the horizontal one first otherwise,
// and then only over the rows the vertical pass reads). This file reproduces all of it (same weights,
// same integer sums, same pass order and intermediate rounding), so for the same decoded image the result
// equals Pillow's bit for bit, and `ToTensor` + `Normalize` of it (see resized_crop.cc) torchvision's.
//
// Only the loops differ. The weights of an axis are padded to one tap count (zero weights add exact
// zeros). The vertical pass sums whole rows (the compiler vectorizes it). The horizontal pass, a
// different small dot product per output pixel, is the costly one: for 3 channels and up to 5 taps it
// runs on AVX2 where the CPU has it (two pixels per step, the weights split into 16-bit halves for
// `pmaddwd`; the integer sums are the same), otherwise unrolled per tap count. No DALI dependency.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dali_relabel {
namespace resample {

/// Pillow's resampling filters (PIL.Image.Resampling): NEAREST, BILINEAR, BICUBIC (a = -0.5), LANCZOS (a = 3).
enum class Filter { kNearest, kBilinear, kBicubic, kLanczos };

/// Fixed-point precision of the 8-bit weights (Pillow's PRECISION_BITS: 8 bits of result, 2 of headroom).
inline constexpr int kPrecisionBits = 32 - 8 - 2;

/// One axis of a resampling: for each output index, the first input index and `taps` int32 weights
/// (zero-padded to the same count for every output, shifted left at the far edge so that
/// `first + taps <= in_size`).
struct AxisWeights {
  int in_size = 0, out_size = 0, taps = 0;
  std::vector<int> first;       // [out_size]
  std::vector<int32_t> weight;  // [out_size * taps]
};

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for resizing a whole axis of `in_size` pixels
/// to `out_size` (the crop is the input: `box = (0, in_size)`). Not for kNearest.
void ComputeWeights(Filter filter, int in_size, int out_size, AxisWeights &w);

/// Pillow's nearest-neighbour source index of every output index (its ImagingScaleAffine: the position
/// `(x + 0.5) * in / out`, accumulated in double as Pillow does, truncated; -1 where it leaves the input).
void NearestIndices(int in_size, int out_size, std::vector<int> &index);

/// Pillow >= 13's pass order: vertical first when the height loses more than twice as many pixels as the
/// width (Pillow <= 12 always went horizontal first; the two orders differ by at most 1 in some pixels).
inline bool VerticalFirst(int in_h, int in_w, int out_h, int out_w) {
  return in_h - out_h > 0 && in_h - out_h > (in_w - out_w) * 2;
}

/// An 8-bit image window: `height` rows of `width` pixels of `channels` interleaved uint8 values,
/// rows `row_stride` bytes apart (a crop of a larger image keeps the image's stride).
struct Window {
  const uint8_t *data;
  int height, width, channels;
  ptrdiff_t row_stride;
};

/// Per-thread scratch of one resampling (buffers grow to the largest crop seen and are reused).
class CropResampler {
 public:
  /// Resamples `in` to `out_h x out_w` (Pillow's `crop.resize((out_w, out_h), filter)`) and calls
  /// `emit(y, row)` for each output row in order, `row` being `out_w * channels` interleaved uint8 values
  /// (valid until the next call). Channels: 1 to 4.
  template <typename Emit>
  void Run(const Window &in, Filter filter, int out_h, int out_w, Emit &&emit);

  /// Whether the horizontal pass may use AVX2 where the CPU has it (the same integers as the portable
  /// loops; false runs those, as on a CPU without AVX2, so that tests compare both everywhere).
  bool simd = true;

 private:
  // Horizontal pass over `rows` rows of `width * channels` bytes (`stride` apart) into rows of
  // `wx_.out_size * channels` contiguous bytes.
  void Horizontal(const uint8_t *src, ptrdiff_t stride, int rows, int width, int channels, uint8_t *out);
  // Output row `y` of the vertical pass; `src` is input row `row0`.
  void VerticalRow(const uint8_t *src, ptrdiff_t stride, int len, int y, int row0, uint8_t *out);
  void Nearest(const Window &in, int out_h, int out_w);

  AxisWeights wx_, wy_;
  std::vector<int> nx_, ny_;
  std::vector<int16_t> simd_weights_;
  std::vector<uint8_t> tmp_, out_;
  std::vector<int32_t> acc_;
};

// ---- implementation of the template ---------------------------------------------------------------

template <typename Emit>
void CropResampler::Run(const Window &in, Filter filter, int out_h, int out_w, Emit &&emit) {
  const int c = in.channels;
  const ptrdiff_t len = static_cast<ptrdiff_t>(out_w) * c;
  // Output rows, +16 bytes: the vectorized horizontal pass stores 4 bytes per 3-byte pixel.
  if (out_.size() < static_cast<size_t>(out_h * len + 16)) out_.resize(out_h * len + 16);
  if (filter == Filter::kNearest) {
    Nearest(in, out_h, out_w);
    for (int y = 0; y < out_h; ++y) emit(y, out_.data() + y * len);
    return;
  }
  // Pillow skips a pass whose axis keeps its size (its weights would be the identity anyway).
  const bool horizontal = out_w != in.width, vertical = out_h != in.height;
  if (!horizontal && !vertical) {
    for (int y = 0; y < out_h; ++y) emit(y, in.data + y * in.row_stride);
    return;
  }
  if (vertical) ComputeWeights(filter, in.height, out_h, wy_);
  if (horizontal) ComputeWeights(filter, in.width, out_w, wx_);
  if (!vertical) {
    Horizontal(in.data, in.row_stride, out_h, in.width, c, out_.data());
  } else if (!horizontal) {
    for (int y = 0; y < out_h; ++y) VerticalRow(in.data, in.row_stride, in.width * c, y, 0, out_.data() + y * len);
  } else if (VerticalFirst(in.height, in.width, out_h, out_w)) {
    const ptrdiff_t in_len = static_cast<ptrdiff_t>(in.width) * c;
    if (tmp_.size() < static_cast<size_t>(out_h * in_len + 16)) tmp_.resize(out_h * in_len + 16);
    for (int y = 0; y < out_h; ++y) VerticalRow(in.data, in.row_stride, in_len, y, 0, tmp_.data() + y * in_len);
    Horizontal(tmp_.data(), in_len, out_h, in.width, c, out_.data());
  } else {
    // Horizontal first, over the rows the vertical pass reads only.
    const int row0 = wy_.first[0];
    const int rows = wy_.first[out_h - 1] + wy_.taps - row0;
    if (tmp_.size() < static_cast<size_t>(rows * len + 16)) tmp_.resize(rows * len + 16);
    Horizontal(in.data + row0 * in.row_stride, in.row_stride, rows, in.width, c, tmp_.data());
    for (int y = 0; y < out_h; ++y) VerticalRow(tmp_.data(), len, len, y, row0, out_.data() + y * len);
  }
  for (int y = 0; y < out_h; ++y) emit(y, out_.data() + y * len);
}

}  // namespace resample
}  // namespace dali_relabel
