// cudasim's stand-in for dali/kernels/dynamic_scratchpad.h: per-run temporary memory (device,
// pinned, host), freed when the scratchpad goes out of scope. Device and pinned memory come from
// the simulator, so kernels and copies that use them are checked like any device memory.
#pragma once

#include <cuda_runtime.h>

#include <cstring>
#include <new>
#include <tuple>
#include <vector>

namespace dali {

class AccessOrder {
 public:
  AccessOrder() = default;
  AccessOrder(cudaStream_t stream) : stream_(stream) {}  // NOLINT: implicit, as DALI's
  cudaStream_t stream() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

namespace kernels {

class DynamicScratchpad {
 public:
  explicit DynamicScratchpad(AccessOrder order = {}) : order_(order) {}
  DynamicScratchpad(const DynamicScratchpad &) = delete;
  DynamicScratchpad &operator=(const DynamicScratchpad &) = delete;
  ~DynamicScratchpad() {
    for (void *p : device_) cudaFree(p);
    for (void *p : pinned_) cudaFreeHost(p);
    for (void *p : host_) ::operator delete[](p);
  }

  template <typename T>
  T *AllocateGPU(size_t count) {
    void *p = nullptr;
    if (cudaMalloc(&p, count * sizeof(T)) != cudaSuccess) throw std::bad_alloc();
    device_.push_back(p);
    return static_cast<T *>(p);
  }
  template <typename T>
  T *AllocatePinned(size_t count) {
    void *p = nullptr;
    if (cudaHostAlloc(&p, count * sizeof(T), 0) != cudaSuccess) throw std::bad_alloc();
    pinned_.push_back(p);
    return static_cast<T *>(p);
  }
  template <typename T>
  T *AllocateHost(size_t count) {
    void *p = ::operator new[](count * sizeof(T) > 0 ? count * sizeof(T) : 1);
    host_.push_back(p);
    return static_cast<T *>(p);
  }

  /// Copies each collection to device memory; returns their device pointers.
  template <typename... Collections>
  auto ToContiguousGPU(AccessOrder order, const Collections &...collections) {
    return std::make_tuple(CopyToGPU(order, collections)...);
  }

 private:
  template <typename Collection>
  auto CopyToGPU(AccessOrder order, const Collection &c) {
    using T = std::remove_cv_t<std::remove_reference_t<decltype(*std::data(c))>>;
    T *p = AllocateGPU<T>(std::size(c));
    if (cudaMemcpyAsync(p, std::data(c), std::size(c) * sizeof(T), cudaMemcpyHostToDevice, order.stream()) !=
        cudaSuccess)
      throw std::runtime_error("cudasim: ToContiguousGPU copy failed");
    return p;
  }

  AccessOrder order_;
  std::vector<void *> device_, pinned_, host_;
};

}  // namespace kernels
}  // namespace dali
