// CUDA backend of fn.relabel.label_pool: per-sample descriptors copied once, one batched launch
// with one thread block per sample.
//
// Block plan (sample = blockIdx.x):
//   1. two threads in different warps compute the row and column RoIAlign weights (shared
//      math header, the same code the CPU backend runs);
//   2. all threads scatter-add the H*W*K stored entries into a per-sample logit vector z[C]
//      (double: the result must not depend on the order atomics land in, so that GPU and CPU
//      agree to ~1e-7), in shared memory when C fits (see below), in global scratch otherwise;
//   3. block reductions give max(z) and sum(exp), and the block writes the C probabilities.
// Invalid entries are never indexed; they set per-sample flags that the host checks after one
// synchronization when validate=True.
//
// Shared memory: the kernel has a little static shared memory (the reductions' storage, 176 B
// with nvcc 13 for sm_90; tests/ops/test_cudasim_nvcc.py checks it) on top of the dynamic
// row_w/col_w[/z] buffer. Static plus dynamic must fit the device's per-block limit, 48 KiB by
// default; above that the kernel opts in to the device's larger limit (163 KiB on sm_80, 227 KiB
// on sm_90: enough for z[] of ImageNet-21k's 21843 classes). Both come from the runtime
// (cudaFuncGetAttributes, cudaDevAttrMaxSharedMemoryPerBlockOptin), never from constants here.
#include <cub/block/block_reduce.cuh>
#include <vector>

#include "dali/core/cuda_error.h"
#include "dali/core/float16.h"
#include "dali/core/static_switch.h"
#include "dali/kernels/dynamic_scratchpad.h"
#include "label_pool/label_pool.h"

namespace dali_relabel {
namespace {

constexpr int kBlock = 256;

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

// float, or dali::float16 (a __half on the device).
template <typename Score>
__device__ __forceinline__ float LoadScore(const Score *p, int i) {
  return static_cast<float>(p[i]);
}

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

// The dynamic shared memory `kernel` can be launched with on `device`: the device's per-block
// opt-in limit minus the kernel's static shared memory.
template <typename Kernel>
size_t MaxDynamicShared(Kernel kernel, int device) {
  int optin = 0;
  CUDA_CALL(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  cudaFuncAttributes attr;
  CUDA_CALL(cudaFuncGetAttributes(&attr, kernel));
  return static_cast<size_t>(optin) > attr.sharedSizeBytes ? optin - attr.sharedSizeBytes : 0;
}

// Lets `kernel` take `bytes` of dynamic shared memory (bytes <= max_dynamic). Above its current
// limit it is opted in to `max_dynamic`, the most it can have, rather than to `bytes`: then two
// threads launching it with different sizes cannot lower each other's limit in between.
template <typename Kernel>
void AllowDynamicShared(Kernel kernel, size_t bytes, size_t max_dynamic) {
  cudaFuncAttributes attr;
  CUDA_CALL(cudaFuncGetAttributes(&attr, kernel));
  if (bytes > static_cast<size_t>(attr.maxDynamicSharedSizeBytes))
    CUDA_CALL(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(max_dynamic)));
}

struct Batch {
  const std::vector<SampleDesc> &descs;  // host copy
  const SampleDesc *descs_gpu;
  int n, max_h, max_w;
  int num_classes;
  float inv_temperature;
  LabelPoolMode mode;
  bool validate;
  int device;
  cudaStream_t stream;
};

// Launches the kernel for one dtype pair: z[] in shared memory when it fits the device's
// opt-in limit, else in global scratch; then, with validate, reports the first bad entry.
template <typename Score, typename Class>
void RunTyped(const Batch &b, ::dali::kernels::DynamicScratchpad &scratch) {
  auto *errors_gpu = scratch.AllocateGPU<SampleError>(b.n);
  const size_t weights = static_cast<size_t>(b.max_h + b.max_w) * sizeof(double);
  const size_t shared_z = weights + static_cast<size_t>(b.num_classes) * sizeof(double);
  const size_t max_shared_z = MaxDynamicShared(LabelPoolKernel<Score, Class, true>, b.device);
  if (shared_z <= max_shared_z) {
    AllowDynamicShared(LabelPoolKernel<Score, Class, true>, shared_z, max_shared_z);
    LabelPoolKernel<Score, Class, true><<<b.n, kBlock, shared_z, b.stream>>>(
        b.descs_gpu, b.num_classes, b.inv_temperature, b.mode, nullptr, errors_gpu);
  } else {
    const size_t max_weights = MaxDynamicShared(LabelPoolKernel<Score, Class, false>, b.device);
    if (weights > max_weights)
      Fail(kLabelPoolName, "label maps of up to ", b.max_h, " x ", b.max_w, " cells are too large for the GPU "
           "backend: their RoIAlign weights need ", weights, " bytes of shared memory and this GPU allows ",
           max_weights, " per block. Use the CPU backend, or smaller maps.");
    auto *z_global = scratch.AllocateGPU<double>(static_cast<size_t>(b.n) * b.num_classes);
    AllowDynamicShared(LabelPoolKernel<Score, Class, false>, weights, max_weights);
    LabelPoolKernel<Score, Class, false><<<b.n, kBlock, weights, b.stream>>>(
        b.descs_gpu, b.num_classes, b.inv_temperature, b.mode, z_global, errors_gpu);
  }
  CUDA_CALL(cudaGetLastError());

  if (!b.validate) return;
  auto *errors = scratch.AllocatePinned<SampleError>(b.n);
  CUDA_CALL(cudaMemcpyAsync(errors, errors_gpu, b.n * sizeof(SampleError), cudaMemcpyDeviceToHost, b.stream));
  CUDA_CALL(cudaStreamSynchronize(b.stream));
  for (int i = 0; i < b.n; ++i) {
    const SampleError &e = errors[i];
    if (e.bad_class == kNoBadClass && e.bad_score_entry == kNoBadScore) continue;
    const SampleDesc &d = b.descs[i];
    const unsigned int class_entry = static_cast<unsigned int>(e.bad_class >> 32);
    if (e.bad_class != kNoBadClass && class_entry < e.bad_score_entry)
      FailBadClass(i, static_cast<int>(class_entry), static_cast<int>(static_cast<unsigned int>(e.bad_class)), d.w,
                   d.k, b.num_classes);
    // The message shows the value, as the CPU backend's does: one element read back.
    Score score;
    CUDA_CALL(cudaMemcpyAsync(&score, static_cast<const Score *>(d.scores) + e.bad_score_entry, sizeof(Score),
                              cudaMemcpyDeviceToHost, b.stream));
    CUDA_CALL(cudaStreamSynchronize(b.stream));
    FailBadScore(i, static_cast<int>(e.bad_score_entry), static_cast<float>(score), d.w, d.k);
  }
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
  int device = 0;
  CUDA_CALL(cudaGetDevice(&device));

  ::dali::kernels::DynamicScratchpad scratch{::dali::AccessOrder(stream)};
  SampleDesc *descs_gpu;
  std::tie(descs_gpu) = scratch.ToContiguousGPU(stream, descs);
  const Batch batch{descs, descs_gpu, n, max_h, max_w, num_classes_, 1.0f / temperature_, mode_, validate_, device,
                    stream};
  // SetupImpl checked the dtypes: the default branches are unreachable, but say why if not.
  TYPE_SWITCH(scores.type(), ::dali::type2id, Score, (::dali::float16, float), (
    TYPE_SWITCH(classes.type(), ::dali::type2id, Class, (int16_t, int32_t), (
      RunTyped<Score, Class>(batch, scratch);
    ), (CheckTypes(scores.type(), classes.type())))
  ), (CheckTypes(scores.type(), classes.type())));  // NOLINT(whitespace/parens)
}

}  // namespace dali_relabel

DALI_REGISTER_OPERATOR(relabel__LabelPool, ::dali_relabel::LabelPool<::dali::GPUBackend>, ::dali::GPU);
