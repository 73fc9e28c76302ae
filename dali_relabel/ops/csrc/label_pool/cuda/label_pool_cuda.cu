// CUDA backend of fn.relabel.label_pool: per-sample descriptors copied once, one batched launch
// with one thread block per sample.
//
// Block plan (sample = blockIdx.x):
//   1. two threads in different warps compute the row and column RoIAlign weights (shared
//      math header, the same code the CPU backend runs);
//   2. all threads scatter-add the H*W*K stored entries into a per-sample logit vector z[C]
//      (double: the result must not depend on the order atomics land in, so that GPU and CPU
//      agree to ~1e-7), in shared memory when C fits, in global scratch otherwise (e.g. 21843);
//   3. block reductions give max(z) and sum(exp), and the block writes the C probabilities.
// Invalid entries are never indexed; they set per-sample flags that the host checks after one
// synchronization when validate=True.
#include <cuda_fp16.h>

#include <cub/block/block_reduce.cuh>
#include <vector>

#include "dali/core/cuda_error.h"
#include "dali/kernels/dynamic_scratchpad.h"
#include "label_pool/label_pool.h"

namespace dali_relabel {
namespace {

constexpr int kBlock = 256;
// Default dynamic shared memory limit without opt-in; above it z[] goes to global scratch.
constexpr size_t kSharedBudget = 48 * 1024;

struct SampleDesc {
  const void *scores;
  const void *classes;
  float *out;
  int h, w, k;
  NormBox box;
};

// Per-sample error report written by the kernel: the first (lowest-index) entry with a class
// out of range, packed as entry << 32 | class bits so one atomicMin keeps the pair together,
// and the first entry with a non-finite score. All ones = none. Reporting the lowest index
// makes the message deterministic and the same as the CPU backend's.
struct SampleError {
  unsigned long long bad_class;
  unsigned int bad_score_entry;
};
constexpr unsigned long long kNoBadClass = ~0ull;
constexpr unsigned int kNoBadScore = ~0u;

// Block argmax with torch.argmax's tie rule (first index of the maximum).
struct ArgMax {
  double value;
  int index;
};
struct ArgMaxOp {
  __device__ __forceinline__ ArgMax operator()(const ArgMax &a, const ArgMax &b) const {
    return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
  }
};

__device__ __forceinline__ float LoadScore(const float *p, int i) { return p[i]; }
__device__ __forceinline__ float LoadScore(const __half *p, int i) { return __half2float(p[i]); }

template <typename Score, typename Class, bool kSharedZ>
__global__ void __launch_bounds__(kBlock)
LabelPoolKernel(const SampleDesc *descs, int num_classes, float inv_temperature, LabelPoolMode mode,
                double *z_global, SampleError *errors) {
  extern __shared__ double smem[];
  using Reduce = cub::BlockReduce<double, kBlock>;
  using ReduceArgMax = cub::BlockReduce<ArgMax, kBlock>;
  __shared__ union {
    typename Reduce::TempStorage value;
    typename ReduceArgMax::TempStorage argmax;
  } reduce_tmp;
  __shared__ double broadcast;
  __shared__ int broadcast_index;

  const SampleDesc d = descs[blockIdx.x];
  const int tid = threadIdx.x;
  double *row_w = smem;
  double *col_w = smem + d.h;
  double *z = kSharedZ ? smem + d.h + d.w : z_global + static_cast<size_t>(blockIdx.x) * num_classes;
  SampleError *err = errors + blockIdx.x;

  if (tid == 0) box_axis_weights(d.box, /*rows=*/true, d.h, d.w, row_w);
  if (tid == 32) box_axis_weights(d.box, /*rows=*/false, d.h, d.w, col_w);
  if (tid == 64) *err = SampleError{kNoBadClass, kNoBadScore};
  for (int j = tid; j < num_classes; j += kBlock) z[j] = 0.0;
  __syncthreads();

  const auto *scores = static_cast<const Score *>(d.scores);
  const auto *classes = static_cast<const Class *>(d.classes);
  const int n = d.h * d.w * d.k;
  for (int e = tid; e < n; e += kBlock) {
    const int cls = classes[e];
    const float score = LoadScore(scores, e);
    if (!class_in_range(cls, num_classes)) {
      atomicMin(&err->bad_class, (static_cast<unsigned long long>(e) << 32) | static_cast<unsigned int>(cls));
      continue;
    }
    if (!score_is_finite(score)) {
      atomicMin(&err->bad_score_entry, static_cast<unsigned int>(e));
      continue;
    }
    const int cell = e / d.k;
    const double rw = row_w[cell / d.w], cw = col_w[cell % d.w];
    if (rw != 0.0 && cw != 0.0) atomicAdd(&z[cls], entry_contribution(rw, cw, score));
  }
  __syncthreads();

  // (mode is uniform over the grid, so whole blocks take the same branch.)
  if (mode.logits) {
    for (int j = tid; j < num_classes; j += kBlock) d.out[j] = static_cast<float>(z[j]);
    return;
  }
  if (mode.single) {
    ArgMax local{-INFINITY, num_classes};
    for (int j = tid; j < num_classes; j += kBlock) local = ArgMaxOp()(local, ArgMax{z[j], j});
    const ArgMax best = ReduceArgMax(reduce_tmp.argmax).Reduce(local, ArgMaxOp());
    if (tid == 0) broadcast_index = best.index;
    __syncthreads();
    for (int j = tid; j < num_classes; j += kBlock) d.out[j] = j == broadcast_index ? 1.f : 0.f;
    return;
  }

  // Softmax over all C classes; the implicit zeros are ordinary entries of z here.
  double local_max = -INFINITY;
  for (int j = tid; j < num_classes; j += kBlock) local_max = fmax(local_max, z[j]);
  double z_max = Reduce(reduce_tmp.value).Reduce(local_max, ::cuda::maximum<>());
  if (tid == 0) broadcast = z_max;
  __syncthreads();
  z_max = broadcast;
  double local_sum = 0.0;
  for (int j = tid; j < num_classes; j += kBlock) local_sum += softmax_numerator(z[j], z_max, inv_temperature);
  __syncthreads();  // reduce_tmp is reused
  const double sum = Reduce(reduce_tmp.value).Sum(local_sum);
  if (tid == 0) broadcast = 1.0 / sum;
  __syncthreads();
  const double inv_sum = broadcast;
  for (int j = tid; j < num_classes; j += kBlock)
    d.out[j] = static_cast<float>(softmax_numerator(z[j], z_max, inv_temperature) * inv_sum);
}

template <typename Score, typename Class>
void Launch(const SampleDesc *descs, int n, int num_classes, float inv_t, LabelPoolMode mode, int max_h, int max_w,
            double *z_global, SampleError *errors, cudaStream_t stream) {
  const size_t weights = (max_h + max_w) * sizeof(double);
  if (z_global == nullptr) {
    const size_t shm = weights + num_classes * sizeof(double);
    LabelPoolKernel<Score, Class, true><<<n, kBlock, shm, stream>>>(descs, num_classes, inv_t, mode, nullptr,
                                                                     errors);
  } else {
    LabelPoolKernel<Score, Class, false><<<n, kBlock, weights, stream>>>(descs, num_classes, inv_t, mode, z_global,
                                                                          errors);
  }
  CUDA_CALL(cudaGetLastError());
}

}  // namespace

template <>
void LabelPool<::dali::GPUBackend>::RunImpl(::dali::Workspace &ws) {
  const auto &scores = ws.Input<::dali::GPUBackend>(0);
  const auto &classes = ws.Input<::dali::GPUBackend>(1);
  auto &out = ws.Output<::dali::GPUBackend>(0);
  const int n = scores.num_samples();
  if (n == 0) return;
  cudaStream_t stream = ws.stream();

  std::vector<SampleDesc> descs(n);
  int max_h = 0, max_w = 0;
  for (int i = 0; i < n; ++i) {
    const auto shape = scores.tensor_shape(i);
    descs[i] = SampleDesc{scores.raw_tensor(i), classes.raw_tensor(i), out.mutable_tensor<float>(i),
                          static_cast<int>(shape[0]), static_cast<int>(shape[1]), static_cast<int>(shape[2]),
                          boxes_[i]};
    max_h = std::max(max_h, descs[i].h);
    max_w = std::max(max_w, descs[i].w);
  }
  if ((max_h + max_w) * sizeof(double) > kSharedBudget)
    Fail(kLabelPoolName, "label maps of ", max_h, " x ", max_w, " cells are too large for the GPU backend.");

  ::dali::kernels::DynamicScratchpad scratch{::dali::AccessOrder(stream)};
  SampleDesc *descs_gpu;
  std::tie(descs_gpu) = scratch.ToContiguousGPU(stream, descs);
  auto *errors_gpu = scratch.AllocateGPU<SampleError>(n);
  const bool shared_z = (max_h + max_w + num_classes_) * sizeof(double) <= kSharedBudget;
  double *z_global = shared_z ? nullptr : scratch.AllocateGPU<double>(static_cast<size_t>(n) * num_classes_);

  const float inv_t = 1.0f / temperature_;
  const bool f16 = scores.type() == ::DALI_FLOAT16;
  const bool i16 = classes.type() == ::DALI_INT16;
  if (f16 && i16)
    Launch<__half, int16_t>(descs_gpu, n, num_classes_, inv_t, mode_, max_h, max_w, z_global, errors_gpu, stream);
  else if (f16)
    Launch<__half, int32_t>(descs_gpu, n, num_classes_, inv_t, mode_, max_h, max_w, z_global, errors_gpu, stream);
  else if (i16)
    Launch<float, int16_t>(descs_gpu, n, num_classes_, inv_t, mode_, max_h, max_w, z_global, errors_gpu, stream);
  else
    Launch<float, int32_t>(descs_gpu, n, num_classes_, inv_t, mode_, max_h, max_w, z_global, errors_gpu, stream);

  if (!validate_) return;
  auto *errors = scratch.AllocatePinned<SampleError>(n);
  CUDA_CALL(cudaMemcpyAsync(errors, errors_gpu, n * sizeof(SampleError), cudaMemcpyDeviceToHost, stream));
  CUDA_CALL(cudaStreamSynchronize(stream));
  for (int i = 0; i < n; ++i) {
    const SampleError &e = errors[i];
    if (e.bad_class == kNoBadClass && e.bad_score_entry == kNoBadScore) continue;
    const int k = descs[i].k, w = descs[i].w;
    const unsigned int class_entry = static_cast<unsigned int>(e.bad_class >> 32);
    if (e.bad_class != kNoBadClass && class_entry < e.bad_score_entry) {
      const int at = static_cast<int>(class_entry);
      const int cls = static_cast<int>(static_cast<unsigned int>(e.bad_class & 0xffffffffu));
      Fail(kLabelPoolName, "sample ", i, ": class index ", cls, " at (row ", at / k / w, ", col ",
           at / k % w, ", k ", at % k, ") is outside [0, num_classes=", num_classes_,
           "). Check num_classes against the label store.");
    }
    const int at = static_cast<int>(e.bad_score_entry);
    Fail(kLabelPoolName, "sample ", i, ": score at (row ", at / k / w, ", col ", at / k % w, ", k ", at % k,
         ") is not finite; label maps must hold finite logits.");
  }
}

}  // namespace dali_relabel

DALI_REGISTER_OPERATOR(relabel__LabelPool, ::dali_relabel::LabelPool<::dali::GPUBackend>, ::dali::GPU);
