// cudasim's stand-in for DALI's Workspace: the inputs, outputs, argument inputs, thread pool
// and stream of one operator run, held in memory by the test driver.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "dali/pipeline/data/tensor_list.h"
#include "dali/pipeline/util/thread_pool.h"

namespace dali {

class ArgumentWorkspace {
 public:
  const TensorList<CPUBackend> &ArgumentInput(const std::string &name) const {
    auto it = arguments_.find(name);
    if (it == arguments_.end()) throw std::invalid_argument("No argument input named '" + name + "'");
    return *it->second;
  }
  void SetArgumentInput(const std::string &name, std::shared_ptr<TensorList<CPUBackend>> value) {
    arguments_[name] = std::move(value);
  }

 private:
  std::map<std::string, std::shared_ptr<TensorList<CPUBackend>>> arguments_;
};

class Workspace : public ArgumentWorkspace {
 public:
  template <typename Backend>
  const TensorList<Backend> &Input(int i) const {
    return *Get<Backend>(inputs_, i, "input");
  }
  template <typename Backend>
  TensorList<Backend> &Output(int i) {
    return *Get<Backend>(outputs_, i, "output");
  }
  int NumInput() const { return static_cast<int>(inputs_.size()); }
  int NumOutput() const { return static_cast<int>(outputs_.size()); }
  ThreadPool &GetThreadPool() const { return *thread_pool_; }
  cudaStream_t stream() const { return stream_; }
  int GetRequestedBatchSize(int) const { return batch_size_; }

  // Set up by the driver (DALI's executor).
  template <typename Backend>
  void AddInput(std::shared_ptr<TensorList<Backend>> t) {
    inputs_.push_back(Slot::Of(std::move(t)));
  }
  template <typename Backend>
  void AddOutput(std::shared_ptr<TensorList<Backend>> t) {
    outputs_.push_back(Slot::Of(std::move(t)));
  }
  void SetThreadPool(ThreadPool *tp) { thread_pool_ = tp; }
  void SetStream(cudaStream_t s) { stream_ = s; }
  void SetBatchSize(int n) { batch_size_ = n; }

 private:
  struct Slot {
    std::shared_ptr<TensorList<CPUBackend>> cpu;
    std::shared_ptr<TensorList<GPUBackend>> gpu;
    template <typename Backend>
    static Slot Of(std::shared_ptr<TensorList<Backend>> t) {
      Slot s;
      if constexpr (std::is_same_v<Backend, GPUBackend>)
        s.gpu = std::move(t);
      else
        s.cpu = std::move(t);
      return s;
    }
  };
  template <typename Backend>
  static TensorList<Backend> *Get(const std::vector<Slot> &slots, int i, const char *what) {
    if (i < 0 || i >= static_cast<int>(slots.size()))
      throw std::out_of_range(std::string("no ") + what + " " + std::to_string(i));
    TensorList<Backend> *t;
    if constexpr (std::is_same_v<Backend, GPUBackend>)
      t = slots[i].gpu.get();
    else
      t = slots[i].cpu.get();
    if (!t) throw std::runtime_error(std::string(what) + " " + std::to_string(i) + " is on the other backend");
    return t;
  }

  std::vector<Slot> inputs_, outputs_;
  ThreadPool *thread_pool_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int batch_size_ = 0;
};

}  // namespace dali
