// CUDA backend of fn.relabel.lookup: one batched gather kernel per iteration.
//
// The rows to fetch are known on the host (row is a CPU argument input, range-checked in
// SetupImpl), so a per-sample descriptor (row, output pointers) is copied to the GPU once and
// one launch copies all rows: blockIdx.y walks the samples, the x dimension the bytes of a row.
// The source is either the process-wide device copy of the bank or, with bank_memory="host",
// the page-locked host mapping read over the bus (see gpu_bank.h).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "dali/core/cuda_error.h"
#include "dali/kernels/dynamic_scratchpad.h"
#include "lookup/cuda/gpu_bank.h"
#include "lookup/lookup.h"

namespace dali_relabel {
namespace {

constexpr int kBlock = 256;
constexpr int kMaxBlocksPerSample = 64;
constexpr int kMaxGridY = 65535;

struct SampleDesc {
  int64_t row;
  void *scores;
  void *classes;
  int32_t *label;
};

struct RowCopy {
  const char *base;  // the bank array's first row
  int64_t row_bytes;
  int unit;  // widest word (16, 8, 4, 2 or 1 bytes) dividing every address and the row size
};

template <typename Word>
__device__ __forceinline__ void CopyWords(void *dst, const void *src, int64_t words, int64_t start, int64_t step) {
  const Word *s = static_cast<const Word *>(src);
  Word *d = static_cast<Word *>(dst);
  for (int64_t i = start; i < words; i += step) d[i] = s[i];
}

// Copies one row with all threads of the blocks of this sample. `unit` is uniform over the
// launch, so the switch does not diverge.
__device__ void CopyRow(void *dst, const RowCopy &rc, int64_t row, int64_t start, int64_t step) {
  const char *src = rc.base + row * rc.row_bytes;
  switch (rc.unit) {
    case 16: CopyWords<uint4>(dst, src, rc.row_bytes / 16, start, step); break;
    case 8: CopyWords<uint2>(dst, src, rc.row_bytes / 8, start, step); break;
    case 4: CopyWords<uint32_t>(dst, src, rc.row_bytes / 4, start, step); break;
    case 2: CopyWords<uint16_t>(dst, src, rc.row_bytes / 2, start, step); break;
    default: CopyWords<uint8_t>(dst, src, rc.row_bytes, start, step); break;
  }
}

__global__ void __launch_bounds__(kBlock)
GatherKernel(const SampleDesc *descs, int n, RowCopy scores, RowCopy classes, const int32_t *labels) {
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int s = blockIdx.y; s < n; s += gridDim.y) {
    const SampleDesc d = descs[s];
    CopyRow(d.scores, scores, d.row, start, step);
    CopyRow(d.classes, classes, d.row, start, step);
    if (start == 0) *d.label = labels[d.row];
  }
}

// The largest power of two (up to 16) dividing `bits`, the OR of every address and size.
int WordSize(uintptr_t bits) {
  for (int unit = 16; unit > 1; unit /= 2)
    if (bits % unit == 0) return unit;
  return 1;
}

}  // namespace

template <>
void Lookup<::dali::GPUBackend>::RunImpl(::dali::Workspace &ws) {
  auto &scores = ws.Output<::dali::GPUBackend>(0);
  auto &classes = ws.Output<::dali::GPUBackend>(1);
  auto &labels = ws.Output<::dali::GPUBackend>(2);
  const int n = static_cast<int>(indices_.size());
  if (n == 0) return;
  cudaStream_t stream = ws.stream();

  int device = -1;
  CUDA_CALL(cudaGetDevice(&device));
  if (!gpu_bank_ || gpu_device_ != device) {
    gpu_bank_ = bank_memory_ == BankMemory::kHost ? AcquireHostMapped(bank_, device)
                                                  : AcquireDeviceCopy(bank_, device, stream);
    gpu_device_ = device;
  }

  RowCopy score_rows{static_cast<const char *>(gpu_bank_->scores), static_cast<int64_t>(bank_->score_row_bytes()), 0};
  RowCopy class_rows{static_cast<const char *>(gpu_bank_->classes), static_cast<int64_t>(bank_->class_row_bytes()),
                     0};
  std::vector<SampleDesc> descs(n);
  uintptr_t score_bits = reinterpret_cast<uintptr_t>(score_rows.base) | score_rows.row_bytes;
  uintptr_t class_bits = reinterpret_cast<uintptr_t>(class_rows.base) | class_rows.row_bytes;
  for (int i = 0; i < n; ++i) {
    descs[i] = SampleDesc{indices_[i], scores.raw_mutable_tensor(i), classes.raw_mutable_tensor(i),
                          labels.mutable_tensor<int32_t>(i)};
    score_bits |= reinterpret_cast<uintptr_t>(descs[i].scores);
    class_bits |= reinterpret_cast<uintptr_t>(descs[i].classes);
  }
  score_rows.unit = WordSize(score_bits);
  class_rows.unit = WordSize(class_bits);

  ::dali::kernels::DynamicScratchpad scratch{::dali::AccessOrder(stream)};
  SampleDesc *descs_gpu;
  std::tie(descs_gpu) = scratch.ToContiguousGPU(stream, descs);

  const int64_t max_words = std::max(score_rows.row_bytes / score_rows.unit, class_rows.row_bytes / class_rows.unit);
  const int blocks_x = static_cast<int>(std::clamp<int64_t>((max_words + kBlock - 1) / kBlock, 1, kMaxBlocksPerSample));
  const dim3 grid(blocks_x, std::min(n, kMaxGridY));
  GatherKernel<<<grid, kBlock, 0, stream>>>(descs_gpu, n, score_rows, class_rows, gpu_bank_->labels);
  CUDA_CALL(cudaGetLastError());
}

}  // namespace dali_relabel

DALI_REGISTER_OPERATOR(relabel__Lookup, ::dali_relabel::Lookup<::dali::GPUBackend>, ::dali::GPU);
