// CPU backend of fn.relabel.lookup: row copies from the memory-mapped bank on the thread pool.
#include <algorithm>
#include <cstring>

#include "lookup/lookup.h"

namespace dali_relabel {

template <>
void Lookup<::dali::CPUBackend>::RunImpl(::dali::Workspace &ws) {
  auto &scores = ws.Output<::dali::CPUBackend>(0);
  auto &classes = ws.Output<::dali::CPUBackend>(1);
  auto &labels = ws.Output<::dali::CPUBackend>(2);
  const int n = static_cast<int>(indices_.size());
  if (n == 0) return;
  const size_t score_row = bank_->score_row_bytes();
  const size_t class_row = bank_->class_row_bytes();
  const auto *score_src = static_cast<const unsigned char *>(bank_->scores().data());
  const auto *class_src = static_cast<const unsigned char *>(bank_->classes().data());
  const auto *label_src = static_cast<const int32_t *>(bank_->labels().data());

  // A row is a few kB: one task per sample would cost more in scheduling than in copying, so
  // samples go in contiguous chunks, a few per thread. Several threads still help when the
  // bank is not yet in RAM (page faults on a disk-backed mapping overlap).
  auto &tp = ws.GetThreadPool();
  const int chunks = std::min(n, std::max(1, tp.NumThreads()) * 4);
  for (int c = 0; c < chunks; ++c) {
    const int begin = static_cast<int>(static_cast<int64_t>(n) * c / chunks);
    const int end = static_cast<int>(static_cast<int64_t>(n) * (c + 1) / chunks);
    tp.AddWork(
        [&, begin, end](int) {
          for (int i = begin; i < end; ++i) {
            const int64_t row = indices_[i];
            std::memcpy(scores.raw_mutable_tensor(i), score_src + row * score_row, score_row);
            std::memcpy(classes.raw_mutable_tensor(i), class_src + row * class_row, class_row);
            *labels.mutable_tensor<int32_t>(i) = label_src[row];
          }
        },
        static_cast<int64_t>(end - begin) * (score_row + class_row));
  }
  tp.RunAll();
}

}  // namespace dali_relabel

DALI_REGISTER_OPERATOR(relabel__Lookup, ::dali_relabel::Lookup<::dali::CPUBackend>, ::dali::CPU);
