// cudasim self-test kernels: each exercises one check of the simulator (a correct kernel with
// a known result, or a kernel with one deliberate GPU bug). Compiled through rewrite.py like the
// project's kernels; tests/ops/test_cudasim_harness.py runs them and asserts the outcome.
#include <cuda_runtime.h>

#include <cub/block/block_reduce.cuh>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "cudasim/selftest.h"

namespace {

// --- kernels -----------------------------------------------------------------------------------

// Every thread adds to shared and global counters with atomics; the results are exact.
__global__ void AtomicsKernel(double *dsum, unsigned long long *umin, int *isum) {
  __shared__ int block_count;
  if (threadIdx.x == 0) block_count = 0;
  __syncthreads();
  atomicAdd(&block_count, 1);
  atomicAdd(dsum, 0.5 * threadIdx.x);
  atomicMin(umin, 1000ull + (threadIdx.x * 7919u) % 997u);
  __syncthreads();
  if (threadIdx.x == 0) atomicAdd(isum, block_count);
}

// Reads shared memory before anything writes it: the simulator's fill makes that NaN.
__global__ void UninitializedSharedKernel(float *out) {
  extern __shared__ float dynamic_part[];
  __shared__ double static_part;
  if (threadIdx.x == 0) {
    out[0] = static_cast<float>(static_part);
    out[1] = dynamic_part[3];
  }
}

// Half the block waits at one barrier, half at another.
__global__ void DivergentBarrierKernel(float *out) {
  if (threadIdx.x < blockDim.x / 2) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1.f;
}

// Threads past the data return before a barrier the others reach.
__global__ void BarrierAfterReturnKernel(float *out, int n) {
  if (static_cast<int>(threadIdx.x) >= n) return;
  out[threadIdx.x] = 1.f;
  __syncthreads();
}

// Thread 0 waits at a barrier while the others spin on a flag that only thread 0 would set.
__global__ void DeadlockKernel(volatile int *flag) {
  if (threadIdx.x == 0) {
    __syncthreads();
    *flag = 1;
  } else {
    while (*flag == 0) {
    }
  }
}

// Writes one element past (or before) the dynamic shared memory it was launched with.
__global__ void SharedOverrunKernel(float *out, int n, int index) {
  extern __shared__ float buffer[];
  for (int i = threadIdx.x; i < n; i += blockDim.x) buffer[i] = static_cast<float>(i);
  __syncthreads();
  if (threadIdx.x == 0) buffer[index] = 1.f;
  __syncthreads();
  out[threadIdx.x] = buffer[threadIdx.x % n];
}

// Does nothing: for the launch checks.
__global__ void __launch_bounds__(256) EmptyKernel(float *out) {
  extern __shared__ float unused[];
  if (threadIdx.x == 0 && blockIdx.x == 0) out[0] = 1.f;
}

// A block sum with cub::BlockReduce<float, 256>; each thread writes what it got back.
__global__ void BlockSumKernel(float *out) {
  using Reduce = cub::BlockReduce<float, 256>;
  __shared__ typename Reduce::TempStorage storage;
  out[threadIdx.x] = Reduce(storage).Sum(static_cast<float>(threadIdx.x));
}

// A plain += on one shared counter by every thread: a data race (ThreadSanitizer's case).
__global__ void RacyCounterKernel(int *out) {
  __shared__ int counter;
  if (threadIdx.x == 0) counter = 0;
  __syncthreads();
  counter += 1;
  __syncthreads();
  if (threadIdx.x == 0) *out = counter;
}

// The layout probe: ptxas places these at 0, 8, 16..19 and pads to 32 for the dynamic part.
__global__ void LayoutKernel(float *out) {
  extern __shared__ float dynamic_part[];
  __shared__ char c[3];
  __shared__ double d;
  __shared__ char e[3];
  if (threadIdx.x == 0) {
    c[threadIdx.y] = static_cast<char>(out[1]);
    d = out[2];
    e[threadIdx.z] = static_cast<char>(out[3]);
    dynamic_part[threadIdx.y] = out[4];
  }
  __syncthreads();
  if (threadIdx.x == 1) out[0] = c[threadIdx.z] + d + e[threadIdx.y] + dynamic_part[threadIdx.z];
}

// --- host side ---------------------------------------------------------------------------------

void Check(cudaError_t e) {
  if (e != cudaSuccess) throw std::runtime_error(cudaGetErrorName(e));
}

template <typename T>
T *DeviceArray(size_t n, T value) {
  T *p = nullptr;
  Check(cudaMalloc(reinterpret_cast<void **>(&p), n * sizeof(T)));
  std::vector<T> host(n, value);
  Check(cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

template <typename T>
std::vector<float> Read(const T *p, size_t n) {
  std::vector<T> host(n);
  Check(cudaMemcpy(host.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
  return std::vector<float>(host.begin(), host.end());
}

int Arg(const std::vector<std::string> &args, size_t i, int fallback) {
  return i < args.size() ? std::stoi(args[i]) : fallback;
}

std::vector<float> Atomics(const std::vector<std::string> &args) {
  const int threads = Arg(args, 0, 256), blocks = Arg(args, 1, 3);
  double *dsum = DeviceArray<double>(1, 0.0);
  unsigned long long *umin = DeviceArray<unsigned long long>(1, ~0ull);
  int *isum = DeviceArray<int>(1, 0);
  AtomicsKernel<<<blocks, threads>>>(dsum, umin, isum);
  Check(cudaGetLastError());
  std::vector<float> out = Read(dsum, 1);
  for (float v : Read(umin, 1)) out.push_back(v);
  for (float v : Read(isum, 1)) out.push_back(v);
  cudaFree(dsum), cudaFree(umin), cudaFree(isum);
  return out;
}

std::vector<float> UninitializedShared(const std::vector<std::string> &) {
  float *out = DeviceArray<float>(2, 0.f);
  UninitializedSharedKernel<<<2, 32, 16 * sizeof(float)>>>(out);
  Check(cudaGetLastError());
  auto v = Read(out, 2);
  cudaFree(out);
  return v;
}

std::vector<float> Divergent(const std::vector<std::string> &) {
  float *out = DeviceArray<float>(64, 0.f);
  DivergentBarrierKernel<<<1, 64>>>(out);
  Check(cudaGetLastError());
  return Read(out, 64);
}

std::vector<float> BarrierAfterReturn(const std::vector<std::string> &args) {
  float *out = DeviceArray<float>(128, 0.f);
  BarrierAfterReturnKernel<<<1, 128>>>(out, Arg(args, 0, 100));
  Check(cudaGetLastError());
  return Read(out, 128);
}

std::vector<float> Deadlock(const std::vector<std::string> &) {
  int *flag = DeviceArray<int>(1, 0);
  DeadlockKernel<<<1, 64>>>(flag);
  Check(cudaGetLastError());
  return Read(flag, 1);
}

std::vector<float> SharedOverrun(const std::vector<std::string> &args) {
  const int n = Arg(args, 0, 100), index = Arg(args, 1, 100);
  float *out = DeviceArray<float>(64, 0.f);
  SharedOverrunKernel<<<2, 64, n * sizeof(float)>>>(out, n, index);
  Check(cudaGetLastError());
  return Read(out, 64);
}

// args: grid.x grid.y block.x block.y block.z dynamic_shared opt_in_bytes (-1: no opt-in).
std::vector<float> LaunchConfig(const std::vector<std::string> &args) {
  float *out = DeviceArray<float>(1, 0.f);
  const dim3 grid(Arg(args, 0, 1), Arg(args, 1, 1));
  const dim3 block(Arg(args, 2, 32), Arg(args, 3, 1), Arg(args, 4, 1));
  const int optin = Arg(args, 6, -1);
  if (optin >= 0) Check(cudaFuncSetAttribute(EmptyKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin));
  EmptyKernel<<<grid, block, static_cast<size_t>(Arg(args, 5, 0))>>>(out);
  Check(cudaGetLastError());
  auto v = Read(out, 1);
  cudaFree(out);
  return v;
}

std::vector<float> BlockSum(const std::vector<std::string> &args) {
  const int threads = Arg(args, 0, 256);
  float *out = DeviceArray<float>(threads, 0.f);
  BlockSumKernel<<<1, threads>>>(out);
  Check(cudaGetLastError());
  auto v = Read(out, threads);
  cudaFree(out);
  return v;
}

std::vector<float> RacyCounter(const std::vector<std::string> &) {
  int *out = DeviceArray<int>(1, 0);
  RacyCounterKernel<<<1, 256>>>(out);
  Check(cudaGetLastError());
  auto v = Read(out, 1);
  cudaFree(out);
  return v;
}

std::vector<float> HostPointer(const std::vector<std::string> &) {
  std::vector<float> host(64);
  EmptyKernel<<<1, 32>>>(host.data());  // a GPU cannot read pageable host memory
  Check(cudaGetLastError());
  return host;
}

std::vector<float> Attributes(const std::vector<std::string> &) {
  cudaFuncAttributes a{};
  Check(cudaFuncGetAttributes(&a, LayoutKernel));
  cudaFuncAttributes b{};
  Check(cudaFuncGetAttributes(&b, EmptyKernel));
  return {static_cast<float>(a.sharedSizeBytes), static_cast<float>(a.maxDynamicSharedSizeBytes),
          static_cast<float>(a.maxThreadsPerBlock), static_cast<float>(b.sharedSizeBytes),
          static_cast<float>(b.maxThreadsPerBlock)};
}

// Copies that a GPU would refuse (wrong direction, past an allocation) and fresh device memory.
std::vector<float> Memory(const std::vector<std::string> &) {
  std::vector<float> host(8, 1.f), out;
  float *dev = nullptr;
  Check(cudaMalloc(reinterpret_cast<void **>(&dev), 8 * sizeof(float)));
  std::vector<float> fresh(8);
  Check(cudaMemcpy(fresh.data(), dev, 8 * sizeof(float), cudaMemcpyDeviceToHost));
  out.push_back(fresh[0]);  // NaN: cudaMalloc does not zero
  out.push_back(cudaMemcpy(dev, host.data(), 8 * sizeof(float), cudaMemcpyHostToDevice));  // fine
  out.push_back(cudaMemcpy(host.data(), dev, 8 * sizeof(float), cudaMemcpyHostToDevice));  // reversed
  out.push_back(cudaMemcpy(dev, host.data(), 9 * sizeof(float), cudaMemcpyHostToDevice));  // one float too many
  out.push_back(cudaMemcpy(dev + 1, host.data(), 8 * sizeof(float), cudaMemcpyHostToDevice));  // ends past it
  out.push_back(cudaGetLastError());  // the last failure, then cleared
  out.push_back(cudaGetLastError());
  out.push_back(cudaFree(host.data()));
  cudaGetLastError();
  Check(cudaFree(dev));
  return out;
}

}  // namespace

namespace cudasim::selftest {

std::vector<float> Run(const std::string &name, const std::vector<std::string> &args) {
  static const std::map<std::string, std::function<std::vector<float>(const std::vector<std::string> &)>> tests = {
      {"atomics", Atomics},
      {"uninitialized_shared", UninitializedShared},
      {"divergent_barrier", Divergent},
      {"barrier_after_return", BarrierAfterReturn},
      {"deadlock", Deadlock},
      {"shared_overrun", SharedOverrun},
      {"launch", LaunchConfig},
      {"block_sum", BlockSum},
      {"racy_counter", RacyCounter},
      {"host_pointer", HostPointer},
      {"attributes", Attributes},
      {"memory", Memory},
  };
  auto it = tests.find(name);
  if (it == tests.end()) throw std::invalid_argument("no self-test named " + name);
  return it->second(args);
}

}  // namespace cudasim::selftest
