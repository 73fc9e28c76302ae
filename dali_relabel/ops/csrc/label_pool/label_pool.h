// fn.relabel.label_pool: soft target of a crop from a top-k label map (see label_pool.cc for
// the schema and its exact semantics). This header holds what both backends share: argument
// parsing and the host-side validation of shapes, types and boxes.
#pragma once

#include <string>
#include <vector>

#include "dali/pipeline/operator/arg_helper.h"
#include "dali/pipeline/operator/operator.h"
#include "label_pool/label_pool_math.h"
#include "util/errors.h"

namespace dali_relabel {

inline constexpr const char *kLabelPoolName = "relabel.label_pool";

/// The errors for a bad stored entry (entry = flat index into a sample's [H, W, K] map),
/// raised by both backends with the same words.
[[noreturn]] inline void FailBadClass(int sample, int entry, int cls, int w, int k, int num_classes) {
  Fail(kLabelPoolName, "sample ", sample, ": class index ", cls, " at (row ", entry / k / w, ", col ",
       entry / k % w, ", k ", entry % k, ") is outside [0, num_classes=", num_classes,
       "). Check num_classes against the label store.");
}
[[noreturn]] inline void FailBadScore(int sample, int entry, float score, int w, int k) {
  Fail(kLabelPoolName, "sample ", sample, ": score at (row ", entry / k / w, ", col ", entry / k % w, ", k ",
       entry % k, ") is not finite (", score, "); label maps must hold finite logits.");
}

/// What the operator writes per class (see the schema): the paper's four label types, plus
/// the pooled logits themselves (linear in the box, so callers can combine regions).
struct LabelPoolMode {
  bool global = false;  // pool the whole map, ignoring the box
  bool single = false;  // one-hot of the argmax instead of the softmax
  bool logits = false;  // the pooled logits z, no softmax

  static LabelPoolMode Parse(const std::string &label_type, const std::string &output) {
    LabelPoolMode m;
    if (label_type == "localized_multi") {
    } else if (label_type == "localized_single") {
      m.single = true;
    } else if (label_type == "global_multi") {
      m.global = true;
    } else if (label_type == "global_single") {
      m.global = m.single = true;
    } else {
      Fail(kLabelPoolName, "label_type must be one of localized_multi, localized_single, global_multi, "
           "global_single; got '", label_type, "'.");
    }
    if (output == "logits") {
      if (m.single)
        Fail(kLabelPoolName, "output='logits' needs a multi-label label_type (localized_multi or global_multi); "
             "single-label types are one-hot vectors.");
      m.logits = true;
    } else if (output != "probabilities") {
      Fail(kLabelPoolName, "output must be 'probabilities' or 'logits', got '", output, "'.");
    }
    return m;
  }
};

template <typename Backend>
class LabelPool : public ::dali::Operator<Backend> {
 public:
  explicit LabelPool(const ::dali::OpSpec &spec)
      : ::dali::Operator<Backend>(spec),
        num_classes_(spec.GetArgument<int>("num_classes")),
        temperature_(spec.GetArgument<float>("temperature")),
        transpose_box_(spec.GetArgument<bool>("transpose_box")),
        validate_(spec.GetArgument<bool>("validate")),
        mode_(LabelPoolMode::Parse(spec.GetArgument<std::string>("label_type"),
                                   spec.GetArgument<std::string>("output"))),
        rel_start_("rel_start", spec),
        rel_end_("rel_end", spec) {
    if (num_classes_ <= 0)
      Fail(kLabelPoolName, "num_classes must be positive, got ", num_classes_, ".");
    if (!(temperature_ > 0) || !isfinite(temperature_))
      Fail(kLabelPoolName, "temperature must be a positive finite number, got ", temperature_, ".");
  }

 protected:
  bool SetupImpl(std::vector<::dali::OutputDesc> &output_desc, const ::dali::Workspace &ws) override {
    const auto &scores = ws.Input<Backend>(0);
    const auto &classes = ws.Input<Backend>(1);
    const int n = scores.num_samples();
    CheckTypes(scores.type(), classes.type());
    for (int i = 0; i < n; ++i) {
      auto ss = scores.tensor_shape(i);
      auto cs = classes.tensor_shape(i);
      if (ss.sample_dim() != 3)
        Fail(kLabelPoolName, "sample ", i, ": scores must be 3-D [H, W, K], got shape ", ShapeStr(ss), ".");
      if (cs != ss)
        Fail(kLabelPoolName, "sample ", i, ": classes shape ", ShapeStr(cs), " differs from scores shape ",
             ShapeStr(ss), "; both must be [H, W, K] for the same map.");
      if (ss[0] < 1 || ss[1] < 1 || ss[2] < 1)
        Fail(kLabelPoolName, "sample ", i, ": empty label map ", ShapeStr(ss), "; H, W and K must be >= 1.");
    }
    ReadBoxes(ws, n);
    output_desc.resize(1);
    output_desc[0].type = ::DALI_FLOAT;
    output_desc[0].shape = ::dali::uniform_list_shape(n, ::dali::TensorShape<1>{num_classes_});
    return true;
  }

  void RunImpl(::dali::Workspace &ws) override;

  static void CheckTypes(::dali::DALIDataType st, ::dali::DALIDataType ct) {
    if (st != ::DALI_FLOAT16 && st != ::DALI_FLOAT)
      Fail(kLabelPoolName, "scores must be float16 or float32, got ", ::daliDataTypeName(st),
           "; cast with fn.cast(scores, dtype=types.FLOAT).");
    if (ct != ::DALI_INT16 && ct != ::DALI_INT32)
      Fail(kLabelPoolName, "classes must be int16 or int32, got ", ::daliDataTypeName(ct),
           "; cast with fn.cast(classes, dtype=types.INT32).");
  }

  /// Reads rel_start/rel_end of every sample into boxes_, checking 0 <= start < end <= 1.
  /// Global label types pool the whole map: their box is the full image, given or not.
  void ReadBoxes(const ::dali::Workspace &ws, int n) {
    if (mode_.global) {
      boxes_.assign(n, NormBox{0.0, 0.0, 1.0, 1.0});
      return;
    }
    const auto shape2 = ::dali::uniform_list_shape(n, ::dali::TensorShape<1>{2});
    if (!rel_start_.HasExplicitValue() || !rel_end_.HasExplicitValue())
      Fail(kLabelPoolName, "rel_start and rel_end are required: the crop's normalized (y, x) corners "
           "(only global label types do without them).");
    rel_start_.Acquire(this->spec_, ws, n, shape2);
    rel_end_.Acquire(this->spec_, ws, n, shape2);
    boxes_.resize(n);
    for (int i = 0; i < n; ++i) {
      const float *s = rel_start_[i].data;
      const float *e = rel_end_[i].data;
      for (int a = 0; a < 2; ++a) {
        const char *axis = a == 0 ? "y" : "x";
        if (!isfinite(s[a]) || !isfinite(e[a]))
          Fail(kLabelPoolName, "sample ", i, ": crop box corner is not finite (rel_start=(", s[0], ", ", s[1],
               "), rel_end=(", e[0], ", ", e[1], ")).");
        if (s[a] < 0.f || e[a] > 1.f)
          Fail(kLabelPoolName, "sample ", i, ": crop box (rel_start=(", s[0], ", ", s[1], "), rel_end=(", e[0],
               ", ", e[1], ")) leaves the image on the ", axis,
               " axis; corners are normalized (y, x) in [0, 1].");
        if (!(s[a] < e[a]))
          Fail(kLabelPoolName, "sample ", i, ": empty crop box on the ", axis, " axis (rel_start=(", s[0], ", ",
               s[1], "), rel_end=(", e[0], ", ", e[1], ")); rel_start must be < rel_end.");
      }
      // The official relabel_imagenet code hands roi_align (y0, x0, y1, x1) where it expects
      // (x1, y1, x2, y2): with transpose_box the box's axes are swapped to reproduce that, and
      // its geometry is computed in float32 as the official code computes it.
      boxes_[i] = transpose_box_ ? NormBox{s[1], s[0], e[1], e[0], true} : NormBox{s[0], s[1], e[0], e[1], false};
    }
  }

  int num_classes_;
  float temperature_;
  bool transpose_box_;
  bool validate_;
  LabelPoolMode mode_;
  ::dali::ArgValue<float, 1> rel_start_;
  ::dali::ArgValue<float, 1> rel_end_;
  std::vector<NormBox> boxes_;
};

}  // namespace dali_relabel
