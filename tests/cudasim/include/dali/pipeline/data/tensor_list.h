// cudasim's stand-in for dali/pipeline/data/tensor_list.h: a batch of samples of one type.
//
// Each sample has its own allocation (CPU: heap; GPU: the simulator's device memory), filled
// with 0xff bytes (NaN) so that an operator that leaves part of an output unwritten is seen,
// and so that AddressSanitizer sees a write past one sample. `misalign` shifts every sample's
// start by that many bytes (to exercise code paths that depend on addresses' alignment).
#pragma once

#include <cuda_runtime.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dali/core/tensor_shape.h"
#include "dali/pipeline/data/backend.h"
#include "dali/pipeline/data/types.h"

namespace dali {

template <typename Backend>
class TensorList {
 public:
  TensorList() = default;
  TensorList(const TensorList &) = delete;
  TensorList &operator=(const TensorList &) = delete;
  ~TensorList() { Free(); }

  void Resize(const TensorListShape<> &shape, DALIDataType type, size_t misalign = 0) {
    Free();
    shape_ = shape;
    type_ = type;
    misalign_ = misalign;
    for (int i = 0; i < shape.num_samples(); ++i) {
      const size_t bytes = volume(shape[i]) * TypeSize(type) + misalign;
      void *p = nullptr;
      if constexpr (std::is_same_v<Backend, GPUBackend>) {
        if (cudaMalloc(&p, bytes) != cudaSuccess) throw std::bad_alloc();
      } else {
        p = ::operator new[](bytes > 0 ? bytes : 1);
        std::memset(p, 0xff, bytes);
      }
      buffers_.push_back(p);
    }
  }

  int num_samples() const { return shape_.num_samples(); }
  int sample_dim() const { return shape_.sample_dim(); }
  DALIDataType type() const { return type_; }
  size_t type_size() const { return TypeSize(type_); }
  const TensorListShape<> &shape() const { return shape_; }
  TensorShape<> tensor_shape(int i) const { return shape_[i]; }

  const void *raw_tensor(int i) const { return static_cast<const char *>(buffers_.at(i)) + misalign_; }
  void *raw_mutable_tensor(int i) { return static_cast<char *>(buffers_.at(i)) + misalign_; }

  template <typename T>
  const T *tensor(int i) const {
    CheckType<T>();
    return static_cast<const T *>(raw_tensor(i));
  }
  template <typename T>
  T *mutable_tensor(int i) {
    CheckType<T>();
    return static_cast<T *>(raw_mutable_tensor(i));
  }

 private:
  template <typename T>
  void CheckType() const {
    if (type2id<T>::value != type_)
      throw std::runtime_error(std::string("Tensor list of type ") + daliDataTypeName(type_) +
                               " accessed as " + daliDataTypeName(type2id<T>::value));
  }
  void Free() {
    for (void *p : buffers_) {
      if constexpr (std::is_same_v<Backend, GPUBackend>)
        cudaFree(p);
      else
        ::operator delete[](p);
    }
    buffers_.clear();
  }

  TensorListShape<> shape_;
  DALIDataType type_ = DALI_NO_TYPE;
  size_t misalign_ = 0;
  std::vector<void *> buffers_;
};

}  // namespace dali
