// Pillow-exact crop resampling: the weights and the two passes (see resample.h for what "exact" means).
#include "resized_crop/resample.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace dali_relabel {
namespace resample {
namespace {

constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);  // rounding: sums start at half an LSB

inline uint8_t Clip8(int32_t sum) {
  const int32_t v = sum >> kPrecisionBits;  // arithmetic shift (floor), as Pillow's clip8 lookup index
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

double Support(Filter f) {
  switch (f) {
    case Filter::kBilinear: return 1.0;
    case Filter::kBicubic: return 2.0;
    case Filter::kLanczos: return 3.0;
    default: return 0.0;
  }
}

// Pillow's filter functions, with its order of operations (double).
double Sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * M_PI;
  return std::sin(x) / x;
}

double Evaluate(Filter f, double x) {
  switch (f) {
    case Filter::kBilinear:
      if (x < 0.0) x = -x;
      return x < 1.0 ? 1.0 - x : 0.0;
    case Filter::kBicubic: {
      constexpr double a = -0.5;
      if (x < 0.0) x = -x;
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    }
    case Filter::kLanczos:
      return -3.0 <= x && x < 3.0 ? Sinc(x) * Sinc(x / 3) : 0.0;
    default:
      return 0.0;
  }
}

// ---- horizontal pass, scalar: `K` taps known at compile time (unrolled; 0: at run time), `C` channels ---

template <int C, int K>
void HorizontalTaps(const uint8_t *in, ptrdiff_t stride, int rows, const AxisWeights &w, int x0, uint8_t *out) {
  // K > 0: the tap count is a compile-time constant, so the compiler unrolls the tap loop (the common case);
  // K == 0: the tap count read at run time (wide downscales).
  const int taps = K > 0 ? K : w.taps;
  const ptrdiff_t len = static_cast<ptrdiff_t>(w.out_size) * C;
  for (int y = 0; y < rows; ++y) {
    const uint8_t *row = in + y * stride;
    uint8_t *o = out + y * len;
    for (int x = x0; x < w.out_size; ++x) {
      const uint8_t *p = row + w.first[x] * C;
      const int32_t *k = w.weight.data() + static_cast<ptrdiff_t>(x) * taps;
      int32_t s[C];
      for (int c = 0; c < C; ++c) s[c] = kHalf;
      for (int t = 0; t < taps; ++t)
        for (int c = 0; c < C; ++c) s[c] += p[t * C + c] * k[t];
      for (int c = 0; c < C; ++c) o[x * C + c] = Clip8(s[c]);
    }
  }
}

template <int C>
void HorizontalScalar(const uint8_t *in, ptrdiff_t stride, int rows, const AxisWeights &w, int x0, uint8_t *out) {
  switch (w.taps) {
#define DALI_RELABEL_TAPS(K) \
    case K: return HorizontalTaps<C, K>(in, stride, rows, w, x0, out);
    DALI_RELABEL_TAPS(1) DALI_RELABEL_TAPS(2) DALI_RELABEL_TAPS(3) DALI_RELABEL_TAPS(4) DALI_RELABEL_TAPS(5)
    DALI_RELABEL_TAPS(6) DALI_RELABEL_TAPS(7) DALI_RELABEL_TAPS(8) DALI_RELABEL_TAPS(9) DALI_RELABEL_TAPS(10)
#undef DALI_RELABEL_TAPS
    default: return HorizontalTaps<C, 0>(in, stride, rows, w, x0, out);
  }
}

// ---- horizontal pass, AVX2: 3 channels, up to 5 taps ------------------------------------------------------
//
// One 16-byte load holds the 5 RGB pixels an output reads; `pshufb` spreads each channel's 5 bytes into
// 16-bit lanes; `pmaddwd` multiplies them by the weights and adds pairs. The 22-bit weights do not fit in
// 16 bits, so each is split w = hi * 2^11 + lo (lo in [0, 2^11)) and the sum is 2^11 * sum(p * hi) +
// sum(p * lo): the same integer as the scalar sum. Two output pixels per step (one per 128-bit lane).

constexpr int kSimdTaps = 5;

#if defined(__x86_64__)
bool HasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

// Per pair of outputs (x, x + 1): 16 int16 lo weights then 16 hi weights, lane 0 for x, lane 1 for x + 1,
// taps 0..4 in lanes 0..4 of each half, zeros after.
void SplitWeights(const AxisWeights &w, int pairs, std::vector<int16_t> &split) {
  split.assign(static_cast<size_t>(pairs) * 32, 0);
  for (int p = 0; p < pairs; ++p) {
    for (int half = 0; half < 2; ++half) {
      const int x = 2 * p + half;
      for (int t = 0; t < w.taps; ++t) {
        const int32_t k = w.weight[static_cast<size_t>(x) * w.taps + t];
        split[p * 32 + half * 8 + t] = static_cast<int16_t>(k & 0x7ff);
        split[p * 32 + 16 + half * 8 + t] = static_cast<int16_t>(k >> 11);
      }
    }
  }
}

// pshufb mask spreading channel `c` of 5 RGB pixels into the low bytes of 16-bit lanes (both 128-bit lanes).
[[gnu::target("avx2")]] __m256i ChannelMask(int c) {
  alignas(16) int8_t m[16];
  for (int t = 0; t < 8; ++t) {
    m[2 * t] = static_cast<int8_t>(t < kSimdTaps ? 3 * t + c : -1);  // -1 (0x80): a zero byte
    m[2 * t + 1] = -1;
  }
  return _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i *>(m)));
}

// One channel's partial sums [t0 + t1, t2 + t3, t4, 0] of both outputs: 2^11 * sum(p * hi) + sum(p * lo).
[[gnu::target("avx2"), gnu::always_inline]] inline __m256i ChannelSums(__m256i px, __m256i mask, __m256i lo,
                                                                       __m256i hi) {
  const __m256i v = _mm256_shuffle_epi8(px, mask);
  return _mm256_add_epi32(_mm256_slli_epi32(_mm256_madd_epi16(v, hi), 11), _mm256_madd_epi16(v, lo));
}

[[gnu::target("avx2")]]
void HorizontalAvx2Rgb(const uint8_t *in, ptrdiff_t stride, int rows, const AxisWeights &w, int pairs,
                       const int16_t *split, uint8_t *out) {
  const __m256i mask_r = ChannelMask(0), mask_g = ChannelMask(1), mask_b = ChannelMask(2);
  const __m256i half = _mm256_set1_epi32(kHalf), zero = _mm256_setzero_si256();
  const ptrdiff_t len = static_cast<ptrdiff_t>(w.out_size) * 3;
  const int *first = w.first.data();
  for (int y = 0; y < rows; ++y) {
    const uint8_t *row = in + y * stride;
    uint8_t *o = out + y * len;
    for (int p = 0; p < pairs; ++p) {
      const int x = 2 * p;
      const __m256i px = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i *>(row + first[x] * 3))),
          _mm_loadu_si128(reinterpret_cast<const __m128i *>(row + first[x + 1] * 3)), 1);
      const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(split + p * 32));
      const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(split + p * 32 + 16));
      const __m256i r = ChannelSums(px, mask_r, lo, hi), g = ChannelSums(px, mask_g, lo, hi),
                    b = ChannelSums(px, mask_b, lo, hi);
      // Per lane: [R, G, B, 0] = the sums of the partial sums.
      const __m256i sums = _mm256_hadd_epi32(_mm256_hadd_epi32(r, g), _mm256_hadd_epi32(b, zero));
      const __m256i v = _mm256_srai_epi32(_mm256_add_epi32(sums, half), kPrecisionBits);
      const __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(v, v), zero);  // saturation = clip8
      // 4-byte stores at 3-byte steps: each pixel's extra byte is overwritten by the next pixel.
      const uint32_t a = static_cast<uint32_t>(_mm256_cvtsi256_si32(bytes));
      const uint32_t c = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm256_extracti128_si256(bytes, 1)));
      std::memcpy(o + x * 3, &a, 4);
      std::memcpy(o + x * 3 + 3, &c, 4);
    }
  }
}
#endif

// ---- vertical pass of one output row: one weight per input row, so a sum of whole rows (vectorized) -----

[[gnu::target_clones("avx2", "default")]]
void VerticalSum(const uint8_t *__restrict base, ptrdiff_t stride, ptrdiff_t len, const int32_t *__restrict k,
                 int taps, int32_t *__restrict acc, uint8_t *__restrict out) {
  for (ptrdiff_t i = 0; i < len; ++i) acc[i] = kHalf;
  for (int t = 0; t < taps; ++t) {
    const int32_t kt = k[t];
    if (kt == 0) continue;  // padding (adds exact zeros)
    const uint8_t *__restrict r = base + t * stride;
    for (ptrdiff_t i = 0; i < len; ++i) acc[i] += r[i] * kt;
  }
  for (ptrdiff_t i = 0; i < len; ++i) out[i] = Clip8(acc[i]);
}

}  // namespace

// In double with no contraction into fused multiply-adds, as Pillow's x86 builds compute them, so that the
// weights round alike.
[[gnu::optimize("fp-contract=off")]]
void ComputeWeights(Filter filter, int in_size, int out_size, AxisWeights &w) {
  // Pillow: scale = (double)(in1 - in0) / outSize with float box corners (0 and in_size here: exact).
  const double scale = static_cast<double>(static_cast<float>(in_size) - 0.0f) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = Support(filter) * filterscale;
  const int ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  const double inv_filterscale = 1.0 / filterscale;
  std::vector<double> k(static_cast<size_t>(out_size) * ksize, 0.0);
  std::vector<int> first(out_size), count(out_size);
  int taps = 1;
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = 0.0 + (xx + 0.5) * scale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double *kx = &k[static_cast<size_t>(xx) * ksize];
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double v = Evaluate(filter, (x + xmin - center + 0.5) * inv_filterscale);
      kx[x] = v;
      ww += v;
    }
    if (ww != 0.0)
      for (int x = 0; x < xmax; ++x) kx[x] /= ww;
    first[xx] = xmin;
    count[xx] = xmax;
    taps = std::max(taps, xmax);
  }
  // One tap count for the axis, the widest output's. Outputs near the far edge start earlier instead of
  // reading past the input; their extra leading weights are zero.
  w.in_size = in_size;
  w.out_size = out_size;
  w.taps = taps;
  w.first.resize(out_size);
  w.weight.assign(static_cast<size_t>(out_size) * taps, 0);
  for (int xx = 0; xx < out_size; ++xx) {
    const int start = std::min(first[xx], in_size - taps);
    w.first[xx] = start;
    const double *kx = &k[static_cast<size_t>(xx) * ksize];
    int32_t *dst = &w.weight[static_cast<size_t>(xx) * taps + (first[xx] - start)];
    for (int x = 0; x < count[xx]; ++x) {
      const double v = kx[x] * (1 << kPrecisionBits);
      dst[x] = static_cast<int32_t>(kx[x] < 0 ? -0.5 + v : 0.5 + v);
    }
  }
}

void NearestIndices(int in_size, int out_size, std::vector<int> &index) {
  index.resize(out_size);
  const double a = static_cast<double>(static_cast<float>(in_size) - 0.0f) / out_size;
  double pos = 0.0 + a * 0.5;
  for (int x = 0; x < out_size; ++x) {
    const int i = pos < 0.0 ? -1 : static_cast<int>(pos);
    index[x] = i < in_size ? i : -1;
    pos += a;
  }
}

void CropResampler::Nearest(const Window &in, int out_h, int out_w) {
  NearestIndices(in.width, out_w, nx_);
  NearestIndices(in.height, out_h, ny_);
  const int c = in.channels;
  for (int y = 0; y < out_h; ++y) {
    uint8_t *o = out_.data() + static_cast<ptrdiff_t>(y) * out_w * c;
    const int sy = ny_[y];
    for (int x = 0; x < out_w; ++x) {
      const int sx = nx_[x];
      for (int ch = 0; ch < c; ++ch)
        o[x * c + ch] = sy < 0 || sx < 0 ? 0 : in.data[sy * in.row_stride + sx * c + ch];  // Pillow fills 0
    }
  }
}

void CropResampler::Horizontal(const uint8_t *src, ptrdiff_t stride, int rows, int width, int channels,
                               uint8_t *out) {
  int x0 = 0;
#if defined(__x86_64__)
  if (simd && channels == 3 && wx_.taps <= kSimdTaps && HasAvx2()) {
    // Pairs whose 16-byte loads stay inside the row (the last outputs are done by the scalar loop).
    int simd = 0;
    while (simd < wx_.out_size && wx_.first[simd] * 3 + 16 <= width * 3) ++simd;
    const int pairs = simd / 2;
    if (pairs > 0) {
      SplitWeights(wx_, pairs, simd_weights_);
      HorizontalAvx2Rgb(src, stride, rows, wx_, pairs, simd_weights_.data(), out);
      x0 = 2 * pairs;
    }
  }
#endif
  if (x0 == wx_.out_size) return;
  switch (channels) {
    case 1: return HorizontalScalar<1>(src, stride, rows, wx_, x0, out);
    case 2: return HorizontalScalar<2>(src, stride, rows, wx_, x0, out);
    case 3: return HorizontalScalar<3>(src, stride, rows, wx_, x0, out);
    default: return HorizontalScalar<4>(src, stride, rows, wx_, x0, out);
  }
}

void CropResampler::VerticalRow(const uint8_t *src, ptrdiff_t stride, int len, int y, int row0, uint8_t *out) {
  if (static_cast<int>(acc_.size()) < len) acc_.resize(len);
  const int taps = wy_.taps;
  VerticalSum(src + (wy_.first[y] - row0) * stride, stride, len, &wy_.weight[static_cast<size_t>(y) * taps], taps,
              acc_.data(), out);
}

}  // namespace resample
}  // namespace dali_relabel
