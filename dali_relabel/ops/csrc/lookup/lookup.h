// fn.relabel.lookup: per-sample gather of label maps from a serving bank (see lookup.cc for the
// schema and its exact semantics). This header holds what both backends share: opening the
// bank, reading and range-checking the per-sample row indices, and the output descriptions.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dali/pipeline/operator/operator.h"
#include "lookup/bank.h"
#include "util/errors.h"

namespace dali_relabel {

inline constexpr const char *kLookupName = "relabel.lookup";

/// Where the GPU backend reads the bank's arrays from: device pointers (to a device copy, or
/// to registered host memory). Owned through a shared_ptr that keeps that memory alive.
struct GpuBankView {
  const void *scores = nullptr;    // float16 or float32 [N, H, W, K]
  const void *classes = nullptr;   // int16 or int32 [N, H, W, K]
  const int32_t *labels = nullptr;  // int32 [N]
};

enum class BankMemory { kDevice, kHost };

template <typename Backend>
class Lookup : public ::dali::Operator<Backend> {
 public:
  explicit Lookup(const ::dali::OpSpec &spec)
      : ::dali::Operator<Backend>(spec), bank_memory_(ParseBankMemory(spec.GetArgument<std::string>("bank_memory"))) {
    // Opened (validated and mapped) once per operator instance, and shared per process
    // between instances that name the same bank.
    bank_ = Bank::Open(kLookupName, spec.GetArgument<std::string>("bank"));
  }

 protected:
  bool SetupImpl(std::vector<::dali::OutputDesc> &output_desc, const ::dali::Workspace &ws) override {
    const int n = ws.GetRequestedBatchSize(0);
    ReadIndices(ws, n);
    const ::dali::TensorShape<3> map_shape{bank_->height(), bank_->width(), bank_->k()};
    output_desc.resize(3);
    output_desc[0].type = bank_->scores_type();
    output_desc[0].shape = ::dali::uniform_list_shape(n, map_shape);
    output_desc[1].type = bank_->classes_type();
    output_desc[1].shape = ::dali::uniform_list_shape(n, map_shape);
    output_desc[2].type = ::DALI_INT32;
    output_desc[2].shape = ::dali::uniform_list_shape(n, ::dali::TensorShape<0>{});
    return true;
  }

  void RunImpl(::dali::Workspace &ws) override;

  static BankMemory ParseBankMemory(const std::string &s) {
    if (s == "device") return BankMemory::kDevice;
    if (s == "host") return BankMemory::kHost;
    Fail(kLookupName, "bank_memory must be \"device\" or \"host\", got \"", s, "\".");
  }

  /// Fills indices_ with the row of every sample, checking dtype, shape and range.
  void ReadIndices(const ::dali::Workspace &ws, int n) {
    indices_.resize(n);
    const auto &spec = this->spec_;
    if (!spec.HasTensorArgument("row")) {
      // A constant: the same row for every sample (mostly useful for tests and debugging).
      const int64_t row = spec.template GetArgument<int>("row");
      for (int i = 0; i < n; ++i) indices_[i] = row;
    } else {
      const auto &arg = ws.ArgumentInput("row");
      if (arg.num_samples() != n)
        Fail(kLookupName, "row holds ", arg.num_samples(), " samples but the batch has ", n, ".");
      // DALI requires an argument input's dtype to equal the schema's; we read the tensor
      // ourselves so that both the file reader's int32 labels and int64 rows are accepted.
      const auto type = arg.type();
      if (type != ::DALI_INT32 && type != ::DALI_INT64)
        Fail(kLookupName, "row must be int32 or int64, got ", ::daliDataTypeName(type),
             "; cast it with fn.cast(row, dtype=types.INT32).");
      for (int i = 0; i < n; ++i) {
        const auto shape = arg.tensor_shape(i);
        if (shape.sample_dim() > 1 || ::dali::volume(shape) != 1)
          Fail(kLookupName, "sample ", i, ": row must be a scalar row number of shape [] or [1], got shape ",
               ShapeStr(shape), ".");
        indices_[i] = type == ::DALI_INT32 ? static_cast<int64_t>(*arg.template tensor<int32_t>(i))
                                           : *arg.template tensor<int64_t>(i);
      }
    }
    const int64_t size = bank_->num_samples();
    for (int i = 0; i < n; ++i) {
      if (indices_[i] < 0 || indices_[i] >= size)
        Fail(kLookupName, "sample ", i, ": row ", indices_[i], " is out of range for the bank ", bank_->path(),
             ", which holds ", size, " samples (valid rows are 0..", size - 1,
             "); check that the rows (e.g. the file list's labels) are row numbers of this bank.");
    }
  }

  BankMemory bank_memory_;
  std::shared_ptr<const Bank> bank_;
  std::vector<int64_t> indices_;
  // GPU backend only: the bank as the kernel sees it on gpu_device_ (acquired at the first run).
  std::shared_ptr<const GpuBankView> gpu_bank_;
  int gpu_device_ = -1;
};

}  // namespace dali_relabel
