// cudasim's stand-in for dali/pipeline/operator/arg_helper.h: ArgValue reads an argument given
// either as a constant or per sample (an argument input), checking its shape as DALI does.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "dali/pipeline/operator/operator.h"

namespace dali {

template <typename T, int ndim = 0>
class ArgValue {
 public:
  struct SampleView {
    const T *data;
    TensorShape<ndim> shape;
  };

  ArgValue(std::string name, const OpSpec &spec) : name_(std::move(name)) {
    has_constant_ = spec.HasArgument(name_);
    has_input_ = spec.HasTensorArgument(name_);
  }

  bool HasExplicitValue() const { return has_constant_ || has_input_; }
  bool HasArgumentInput() const { return has_input_; }

  void Acquire(const OpSpec &spec, const ArgumentWorkspace &ws, int nsamples, const TensorListShape<ndim> &expected) {
    views_.clear();
    if (has_input_) {
      const TensorList<CPUBackend> &in = ws.ArgumentInput(name_);
      if (in.num_samples() != nsamples) {
        std::ostringstream ss;
        ss << "Unexpected number of samples for argument \"" << name_ << "\". Expected " << nsamples << ", got "
           << in.num_samples();
        throw std::invalid_argument(ss.str());
      }
      if (in.type() != type2id<T>::value)
        throw std::invalid_argument("Argument \"" + name_ + "\" has type " + daliDataTypeName(in.type()) +
                                    ", expected " + daliDataTypeName(type2id<T>::value));
      if (!(expected == in.shape())) {
        std::ostringstream ss;
        ss << "Unexpected shape for argument \"" << name_ << "\". Expected " << expected << ", but got " << in.shape();
        throw std::invalid_argument(ss.str());
      }
      for (int i = 0; i < nsamples; ++i) views_.push_back(SampleView{in.template tensor<T>(i), in.tensor_shape(i)});
      return;
    }
    constant_ = spec.GetArgument<std::vector<T>>(name_);
    for (int i = 0; i < nsamples; ++i) {
      if (static_cast<int64_t>(constant_.size()) != volume(expected[i])) {
        std::ostringstream ss;
        ss << "Argument \"" << name_ << "\" expected shape " << expected[i] << " but got " << constant_.size()
           << " values, which can't be interpreted as the expected shape.";
        throw std::invalid_argument(ss.str());
      }
      views_.push_back(SampleView{constant_.data(), expected[i]});
    }
  }

  const SampleView &operator[](int i) const { return views_.at(i); }

 private:
  std::string name_;
  bool has_constant_ = false, has_input_ = false;
  std::vector<T> constant_;
  std::vector<SampleView> views_;
};

}  // namespace dali
