// CPU backend of fn.relabel.label_pool: one thread-pool task per sample.
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "dali/core/float16.h"
#include "dali/core/static_switch.h"
#include "label_pool/label_pool.h"

namespace dali_relabel {
namespace {

// Per-thread scratch reused across samples and iterations. `z` is a dense accumulator over all
// classes that is kept all-zero between samples (only touched entries are reset), so a sample
// costs O(H*W*K + touched) plus the unavoidable O(C) write of its output row.
struct PoolScratch {
  std::vector<double> z;
  std::vector<unsigned char> seen;
  std::vector<int> touched;
  std::vector<double> row_w, col_w;

  static PoolScratch &Get(int num_classes, int h, int w) {
    thread_local PoolScratch s;
    if (static_cast<int>(s.z.size()) != num_classes) {
      s.z.assign(num_classes, 0.0);
      s.seen.assign(num_classes, 0);
    }
    if (static_cast<int>(s.row_w.size()) < h) s.row_w.resize(h);
    if (static_cast<int>(s.col_w.size()) < w) s.col_w.resize(w);
    return s;
  }
};

inline float ToFloat(float x) { return x; }
inline float ToFloat(::dali::float16 x) { return static_cast<float>(x); }

// Finiteness straight from the bits, so validation does not pay for a half->float conversion
// per entry (a software conversion on CPUs compiled without F16C).
inline bool IsFinite(float x) { return score_is_finite(x); }
inline bool IsFinite(::dali::float16 x) {
  uint16_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return (bits & 0x7c00u) != 0x7c00u;  // exponent all ones: inf or nan
}

// Writes the pooled logits, or the one-hot of their argmax, and resets the scratch. z is the
// dense accumulator, so untouched classes read as their logit, 0.
void WriteLogitsOrArgmax(PoolScratch &s, int num_classes, LabelPoolMode mode, float *out) {
  if (mode.logits) {
    std::fill(out, out + num_classes, 0.f);
    for (int cls : s.touched) out[cls] = static_cast<float>(s.z[cls]);
  } else {
    int best = 0;  // first index of the maximum, like torch.argmax
    for (int j = 1; j < num_classes; ++j)
      if (s.z[j] > s.z[best]) best = j;
    std::fill(out, out + num_classes, 0.f);
    out[best] = 1.f;
  }
  for (int cls : s.touched) {
    s.z[cls] = 0.0;
    s.seen[cls] = 0;
  }
}

template <typename Score, typename Class>
void PoolSample(int sample, const Score *scores, const Class *classes, int h, int w, int k,
                const NormBox &box, int num_classes, float inv_temperature, bool validate, LabelPoolMode mode,
                float *out) {
  const int n = h * w * k;
  if (validate) {
    // Checked in full before pooling so that a bad map fails whatever the crop.
    for (int e = 0; e < n; ++e) {
      const int cls = classes[e];
      if (!class_in_range(cls, num_classes)) FailBadClass(sample, e, cls, w, k, num_classes);
      if (!IsFinite(scores[e])) FailBadScore(sample, e, ToFloat(scores[e]), w, k);
    }
  }

  PoolScratch &s = PoolScratch::Get(num_classes, h, w);
  const AxisSpan rows = box_axis_weights(box, /*rows=*/true, h, w, s.row_w.data());
  const AxisSpan cols = box_axis_weights(box, /*rows=*/false, h, w, s.col_w.data());
  s.touched.clear();
  for (int r = rows.first; r <= rows.last; ++r) {
    for (int c = cols.first; c <= cols.last; ++c) {
      const int base = (r * w + c) * k;
      for (int j = 0; j < k; ++j) {
        const int cls = classes[base + j];
        const float score = ToFloat(scores[base + j]);
        if (!validate && (!class_in_range(cls, num_classes) || !score_is_finite(score)))
          continue;  // validate=False: invalid entries are ignored, never indexed
        s.z[cls] += entry_contribution(s.row_w[r], s.col_w[c], score);
        if (!s.seen[cls]) {
          s.seen[cls] = 1;
          s.touched.push_back(cls);
        }
      }
    }
  }

  if (mode.logits || mode.single) {
    WriteLogitsOrArgmax(s, num_classes, mode, out);
    return;
  }
  // Softmax over C classes of which all but the touched ones have logit exactly 0: their
  // shared numerator is computed once and counted (C - touched) times.
  const int background = num_classes - static_cast<int>(s.touched.size());
  double z_max = background > 0 ? 0.0 : -std::numeric_limits<double>::infinity();
  for (int cls : s.touched) z_max = std::max(z_max, s.z[cls]);
  const float bg = background > 0 ? softmax_numerator(0.0, z_max, inv_temperature) : 0.f;
  double sum = static_cast<double>(bg) * background;
  for (int cls : s.touched) sum += softmax_numerator(s.z[cls], z_max, inv_temperature);
  const double inv_sum = 1.0 / sum;
  std::fill(out, out + num_classes, static_cast<float>(bg * inv_sum));
  for (int cls : s.touched) {
    out[cls] = static_cast<float>(softmax_numerator(s.z[cls], z_max, inv_temperature) * inv_sum);
    s.z[cls] = 0.0;
    s.seen[cls] = 0;
  }
}

template <typename Score, typename Class>
void RunTyped(const ::dali::TensorList<::dali::CPUBackend> &scores,
              const ::dali::TensorList<::dali::CPUBackend> &classes, ::dali::TensorList<::dali::CPUBackend> &out,
              const std::vector<NormBox> &boxes, int num_classes, float inv_temperature, bool validate,
              LabelPoolMode mode, ::dali::ThreadPool &tp) {
  const int n = scores.num_samples();
  for (int i = 0; i < n; ++i) {
    const auto shape = scores.tensor_shape(i);
    const int h = shape[0], w = shape[1], k = shape[2];
    tp.AddWork(
        [&, i, h, w, k](int) {
          PoolSample(i, scores.tensor<Score>(i), classes.tensor<Class>(i), h, w, k, boxes[i], num_classes,
                     inv_temperature, validate, mode, out.mutable_tensor<float>(i));
        },
        static_cast<int64_t>(h) * w * k + num_classes);
  }
  tp.RunAll();
}

}  // namespace

template <>
void LabelPool<::dali::CPUBackend>::RunImpl(::dali::Workspace &ws) {
  const auto &scores = ws.Input<::dali::CPUBackend>(0);
  const auto &classes = ws.Input<::dali::CPUBackend>(1);
  auto &out = ws.Output<::dali::CPUBackend>(0);
  auto &tp = ws.GetThreadPool();
  const float inv_t = 1.0f / temperature_;
  // SetupImpl checked the dtypes: the default branches are unreachable, but say why if not.
  TYPE_SWITCH(scores.type(), ::dali::type2id, Score, (::dali::float16, float), (
    TYPE_SWITCH(classes.type(), ::dali::type2id, Class, (int16_t, int32_t), (
      RunTyped<Score, Class>(scores, classes, out, boxes_, num_classes_, inv_t, validate_, mode_, tp);
    ), (CheckTypes(scores.type(), classes.type())))
  ), (CheckTypes(scores.type(), classes.type())));  // NOLINT(whitespace/parens)
}

}  // namespace dali_relabel

DALI_REGISTER_OPERATOR(relabel__LabelPool, ::dali_relabel::LabelPool<::dali::CPUBackend>, ::dali::CPU);
