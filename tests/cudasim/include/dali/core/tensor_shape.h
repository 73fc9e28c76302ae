// cudasim's stand-in for dali/core/tensor_shape.h: sample shapes and per-batch shape lists.
// One representation for every ndim (a vector of extents); ndim only documents intent.
#pragma once

#include <cstdint>
#include <ostream>
#include <type_traits>
#include <utility>
#include <vector>

namespace dali {

constexpr int DynamicDimensions = -1;

template <int ndim = DynamicDimensions>
class TensorShape {
 public:
  TensorShape() : dims_(ndim > 0 ? ndim : 0, 0) {}
  template <typename... Ints,
            std::enable_if_t<(sizeof...(Ints) > 0) && (std::is_integral_v<Ints> && ...), int> = 0>
  TensorShape(Ints... extents) : dims_{static_cast<int64_t>(extents)...} {}  // NOLINT
  explicit TensorShape(std::vector<int64_t> extents) : dims_(std::move(extents)) {}
  template <int other>
  TensorShape(const TensorShape<other> &s) : dims_(s.extents()) {}  // NOLINT

  int sample_dim() const { return static_cast<int>(dims_.size()); }
  int size() const { return sample_dim(); }
  int64_t operator[](int d) const { return dims_[d]; }
  int64_t &operator[](int d) { return dims_[d]; }
  const std::vector<int64_t> &extents() const { return dims_; }
  auto begin() const { return dims_.begin(); }
  auto end() const { return dims_.end(); }

  template <int other>
  bool operator==(const TensorShape<other> &s) const {
    return dims_ == s.extents();
  }
  template <int other>
  bool operator!=(const TensorShape<other> &s) const {
    return !(*this == s);
  }

 private:
  std::vector<int64_t> dims_;
};

template <int ndim>
int64_t volume(const TensorShape<ndim> &s) {
  int64_t v = 1;
  for (int64_t e : s) v *= e;
  return v;
}

template <int ndim>
std::ostream &operator<<(std::ostream &os, const TensorShape<ndim> &s) {
  os << "{";
  for (int d = 0; d < s.sample_dim(); ++d) os << (d ? ", " : "") << s[d];
  return os << "}";
}

template <int ndim = DynamicDimensions>
class TensorListShape {
 public:
  TensorListShape() = default;
  explicit TensorListShape(std::vector<TensorShape<>> samples) : samples_(std::move(samples)) {}
  template <int other>
  TensorListShape(const TensorListShape<other> &s) : samples_(s.samples()) {}  // NOLINT

  int num_samples() const { return static_cast<int>(samples_.size()); }
  int sample_dim() const { return samples_.empty() ? (ndim > 0 ? ndim : 0) : samples_[0].sample_dim(); }
  TensorShape<ndim> tensor_shape(int i) const { return samples_[i]; }
  TensorShape<ndim> operator[](int i) const { return samples_[i]; }
  int64_t num_elements() const {
    int64_t n = 0;
    for (const auto &s : samples_) n += volume(s);
    return n;
  }
  const std::vector<TensorShape<>> &samples() const { return samples_; }

  template <int other>
  bool operator==(const TensorListShape<other> &s) const {
    if (num_samples() != s.num_samples()) return false;
    for (int i = 0; i < num_samples(); ++i)
      if (samples_[i] != s.samples()[i]) return false;
    return true;
  }

 private:
  std::vector<TensorShape<>> samples_;
};

template <int ndim>
std::ostream &operator<<(std::ostream &os, const TensorListShape<ndim> &s) {
  os << "{";
  for (int i = 0; i < s.num_samples(); ++i) os << (i ? ", " : "") << s[i];
  return os << "}";
}

template <int ndim>
TensorListShape<ndim> uniform_list_shape(int n, const TensorShape<ndim> &sample) {
  return TensorListShape<ndim>(std::vector<TensorShape<>>(n, TensorShape<>(sample)));
}

}  // namespace dali
