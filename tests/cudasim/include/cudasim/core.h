// cudasim: runs CUDA kernels on the CPU for tests (see docs/CUDASIM.md).
//
// This header is what a rewritten .cu file sees instead of the CUDA compiler's built-ins: the
// execution-space qualifiers, the thread indices, a checked __syncthreads, atomics, the kernel
// launch that tests/cudasim/rewrite.py substitutes for `k<<<grid, block, shm, stream>>>(args)`,
// and the hooks for `__shared__` variables that the rewrite inserts. The machinery behind it
// (one OS thread per CUDA thread, the barrier, launch checks, device memory) is in src/sim.cc.
//
// Execution model: the threads of a block run truly concurrently, one std::thread each (a pool
// reused across blocks and launches); the blocks of a grid run one after another. Static
// __shared__ variables are function-local statics (blocks never overlap), dynamic shared memory
// is a buffer of exactly the launch's size; both are filled with 0xff bytes (NaN) at every block
// start.
#pragma once

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// --- execution-space qualifiers ------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) alignas(n)
#define __constant__ CUDASIM_constant_memory_is_not_simulated
// Static and dynamic __shared__ declarations inside kernel bodies are rewritten by rewrite.py;
// anything left (in a header, in a __device__ function) cannot be simulated and fails here.
#define __shared__ CUDASIM_shared_is_supported_only_in_kernel_bodies_of_rewritten_cu_files

// --- vector types and indices ----------------------------------------------------------------------
struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}  // NOLINT: CUDA converts implicitly
  constexpr operator uint3() const { return uint3{x, y, z}; }
};
struct alignas(8) uint2 {
  unsigned int x, y;
};
struct alignas(16) uint4 {
  unsigned int x, y, z, w;
};
struct alignas(8) int2 {
  int x, y;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) longlong2 {
  long long x, y;
};
struct alignas(16) ulonglong2 {
  unsigned long long x, y;
};

// Per CUDA thread (each CUDA thread is an OS thread). Kernels only read them.
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};
constexpr int warpSize = 32;

// --- runtime types used by the launch machinery ------------------------------------------------
enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorCudartUnloading = 4,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorInvalidDevice = 101,
  cudaErrorHostMemoryAlreadyRegistered = 712,
  cudaErrorHostMemoryNotRegistered = 713,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorNotSupported = 801,
};
using cudaError = cudaError_t;
struct CUstream_st;
using cudaStream_t = CUstream_st *;

namespace cudasim {

/// Where a kernel is launched: the original .cu file and line (rewrite.py keeps line numbers),
/// and the kernel expression as written there.
struct LaunchSite {
  const char *file;
  int line;
  const char *kernel;
};

/// A bug the simulator found while running a kernel (divergent barrier, barrier after return,
/// deadlock, shared memory overrun, cub misuse, ...). Not a CUDA error: a real GPU would hang,
/// corrupt memory or compute garbage. The message names the kernel, the block and the line.
class KernelFault : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

namespace detail {

using KernelKey = const void *;

/// What the machinery needs from a kernel without knowing its parameter types.
struct KernelThunk {
  KernelKey key;
  std::function<void()> discover;  // calls the kernel with value-initialized arguments
};

struct LaunchRequest {
  KernelThunk kernel;
  LaunchSite site;
  dim3 grid, block;
  size_t dynamic_shared;
  cudaStream_t stream;
  std::function<void()> run_thread;  // runs the kernel body with the launch's arguments
  std::vector<std::pair<int, const void *>> pointer_args;  // (argument index, value) to check
  std::vector<std::string> pointer_arg_types;
};

void Launch(const LaunchRequest &request);

// Hooks inserted by rewrite.py into kernel bodies.
extern thread_local bool discovering;  // true while a kernel runs only to declare its shared memory
void KernelEntry(unsigned int launch_bounds, const char *pretty_function, bool module_dynamic_shared);
void NoteStaticShared(void *address, size_t size, size_t align, const char *file, int line);
void NoteDynamicShared(const char *file, int line);
void *DynamicSharedBase(const char *file, int line);

inline void static_shared(void *address, size_t size, size_t align, const char *file, int line) {
  if (discovering) NoteStaticShared(address, size, align, file, line);
}
template <typename T>
T *dynamic_shared(const char *file, int line) {
  if (discovering) {
    NoteDynamicShared(file, line);
    return nullptr;
  }
  return static_cast<T *>(DynamicSharedBase(file, line));
}
inline bool discovery_return() { return discovering; }

template <typename T>
std::string TypeName() {
  // "... [with T = double*]" -> "double*" (g++'s __PRETTY_FUNCTION__ format).
  std::string s = __PRETTY_FUNCTION__;
  const auto at = s.find("T = ");
  if (at == std::string::npos) return "?";
  const auto end = s.find_first_of(";]", at);
  return s.substr(at + 4, end - at - 4);
}

}  // namespace detail

/// What `kernel<<<grid, block, shm, stream>>>` becomes; calling it with the arguments launches.
template <typename... Params>
class KernelLaunch {
 public:
  KernelLaunch(void (*kernel)(Params...), LaunchSite site, dim3 grid, dim3 block, size_t shm, cudaStream_t stream)
      : kernel_(kernel), site_(site), grid_(grid), block_(block), shm_(shm), stream_(stream) {}

  template <typename... Args>
  void operator()(Args &&...args) const {
    static_assert(sizeof...(Args) == sizeof...(Params), "cudasim: wrong number of kernel arguments");
    using Tuple = std::tuple<std::decay_t<Params>...>;
    // Converted to the parameter types once, as a CUDA launch does; every thread then gets
    // its own copies (by-value parameters of the call).
    auto values = std::make_shared<const Tuple>(std::forward<Args>(args)...);
    detail::LaunchRequest r{Thunk(kernel_), site_, grid_, block_, shm_, stream_, {}, {}, {}};
    auto *kernel = kernel_;
    r.run_thread = [kernel, values] { std::apply(kernel, *values); };
    CollectPointers(*values, r, std::index_sequence_for<Params...>{});
    detail::Launch(r);
  }

  static detail::KernelThunk Thunk(void (*kernel)(Params...)) {
    return detail::KernelThunk{reinterpret_cast<detail::KernelKey>(kernel), [kernel] {
                                 std::tuple<std::decay_t<Params>...> zeros{};
                                 std::apply(kernel, zeros);
                               }};
  }

 private:
  template <typename Tuple, size_t... I>
  static void CollectPointers(const Tuple &t, detail::LaunchRequest &r, std::index_sequence<I...>) {
    (AddPointer<I>(std::get<I>(t), r), ...);
  }
  template <size_t I, typename T>
  static void AddPointer(const T &value, detail::LaunchRequest &r) {
    if constexpr (std::is_pointer_v<T>) {
      // (through an integer: a static_cast cannot drop `volatile`)
      const auto *address = reinterpret_cast<const void *>(reinterpret_cast<uintptr_t>(value));
      r.pointer_args.emplace_back(static_cast<int>(I), address);
      r.pointer_arg_types.push_back(detail::TypeName<T>());
    }
  }

  void (*kernel_)(Params...);
  LaunchSite site_;
  dim3 grid_, block_;
  size_t shm_;
  cudaStream_t stream_;
};

template <typename... Params>
KernelLaunch<Params...> launch(void (*kernel)(Params...), LaunchSite site, dim3 grid, dim3 block, size_t shm = 0,
                               cudaStream_t stream = nullptr) {
  return KernelLaunch<Params...>(kernel, site, grid, block, shm, stream);
}

void syncthreads(const char *file, int line);

namespace detail {
/// The kernel's thunk for attribute queries (cudaFuncGetAttributes and friends).
template <typename... Params>
KernelThunk ThunkOf(void (*kernel)(Params...)) {
  return KernelLaunch<Params...>::Thunk(kernel);
}
}  // namespace detail

}  // namespace cudasim

#define __syncthreads() ::cudasim::syncthreads(__FILE__, __LINE__)

inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
template <typename T>
inline T __ldg(const T *p) {
  return *p;
}

// --- atomics: relaxed, like CUDA's, through std::atomic_ref ------------------------------------------
namespace cudasim::detail {
template <typename T>
inline std::atomic_ref<T> Ref(T *p) {
  return std::atomic_ref<T>(*p);
}
template <typename T, typename Op>
inline T AtomicUpdate(T *p, Op op) {
  auto ref = Ref(p);
  T old = ref.load(std::memory_order_relaxed);
  while (!ref.compare_exchange_weak(old, op(old), std::memory_order_relaxed)) {
  }
  return old;
}
}  // namespace cudasim::detail

#define CUDASIM_ATOMIC_ADD(T) \
  inline T atomicAdd(T *p, T v) { return ::cudasim::detail::Ref(p).fetch_add(v, std::memory_order_relaxed); }
CUDASIM_ATOMIC_ADD(int)
CUDASIM_ATOMIC_ADD(unsigned int)
CUDASIM_ATOMIC_ADD(unsigned long long)
CUDASIM_ATOMIC_ADD(float)
CUDASIM_ATOMIC_ADD(double)
#undef CUDASIM_ATOMIC_ADD
inline int atomicSub(int *p, int v) { return ::cudasim::detail::Ref(p).fetch_sub(v, std::memory_order_relaxed); }
inline unsigned int atomicSub(unsigned int *p, unsigned int v) {
  return ::cudasim::detail::Ref(p).fetch_sub(v, std::memory_order_relaxed);
}
#define CUDASIM_ATOMIC_MINMAX_BITS(T)                                                                   \
  inline T atomicMin(T *p, T v) {                                                                         \
    return ::cudasim::detail::AtomicUpdate(p, [v](T old) { return v < old ? v : old; });                  \
  }                                                                                                       \
  inline T atomicMax(T *p, T v) {                                                                         \
    return ::cudasim::detail::AtomicUpdate(p, [v](T old) { return old < v ? v : old; });                  \
  }                                                                                                       \
  inline T atomicAnd(T *p, T v) { return ::cudasim::detail::Ref(p).fetch_and(v, std::memory_order_relaxed); } \
  inline T atomicOr(T *p, T v) { return ::cudasim::detail::Ref(p).fetch_or(v, std::memory_order_relaxed); }   \
  inline T atomicXor(T *p, T v) { return ::cudasim::detail::Ref(p).fetch_xor(v, std::memory_order_relaxed); }
CUDASIM_ATOMIC_MINMAX_BITS(int)
CUDASIM_ATOMIC_MINMAX_BITS(unsigned int)
CUDASIM_ATOMIC_MINMAX_BITS(long long)
CUDASIM_ATOMIC_MINMAX_BITS(unsigned long long)
#undef CUDASIM_ATOMIC_MINMAX_BITS
#define CUDASIM_ATOMIC_EXCH_CAS(T)                                                                     \
  inline T atomicExch(T *p, T v) { return ::cudasim::detail::Ref(p).exchange(v, std::memory_order_relaxed); } \
  inline T atomicCAS(T *p, T expected, T desired) {                                                      \
    ::cudasim::detail::Ref(p).compare_exchange_strong(expected, desired, std::memory_order_relaxed);     \
    return expected;                                                                                     \
  }
CUDASIM_ATOMIC_EXCH_CAS(int)
CUDASIM_ATOMIC_EXCH_CAS(unsigned int)
CUDASIM_ATOMIC_EXCH_CAS(unsigned long long)
#undef CUDASIM_ATOMIC_EXCH_CAS
inline float atomicExch(float *p, float v) { return ::cudasim::detail::Ref(p).exchange(v, std::memory_order_relaxed); }

// --- what is not simulated fails to compile, saying why ---------------------------------------------
namespace cudasim::detail {
template <typename... A>
constexpr bool kNotSimulated = sizeof...(A) < 0;
}
#define CUDASIM_NOT_SIMULATED(name)                                                                      \
  template <typename... A>                                                                               \
  inline int name(A...) {                                                                                \
    static_assert(::cudasim::detail::kNotSimulated<A...>,                                                \
                  "cudasim does not simulate warp-level primitives (" #name "): keep kernels free of "   \
                  "warp-synchronous code, or add warp emulation to tests/cudasim first");               \
    return 0;                                                                                            \
  }
CUDASIM_NOT_SIMULATED(__shfl_sync)
CUDASIM_NOT_SIMULATED(__shfl_up_sync)
CUDASIM_NOT_SIMULATED(__shfl_down_sync)
CUDASIM_NOT_SIMULATED(__shfl_xor_sync)
CUDASIM_NOT_SIMULATED(__ballot_sync)
CUDASIM_NOT_SIMULATED(__any_sync)
CUDASIM_NOT_SIMULATED(__all_sync)
CUDASIM_NOT_SIMULATED(__activemask)
CUDASIM_NOT_SIMULATED(__syncwarp)
#undef CUDASIM_NOT_SIMULATED
