// cudasim internals shared by src/sim.cc (execution) and src/runtime.cc (runtime API): the
// simulated device, what is known about each kernel, and a running block.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "cudasim/sim.h"

namespace cudasim::detail {

struct DeviceProfile {
  std::string name = "h200";
  int cc_major = 9, cc_minor = 0;
  int multiprocessors = 132;
  unsigned int max_threads = 1024;
  unsigned int max_block[3] = {1024, 1024, 64};
  unsigned int max_grid[3] = {2147483647u, 65535u, 65535u};
  size_t shared_per_block = 48 * 1024;  // without opt-in
  size_t shared_optin = 232448;         // cudaDevAttrMaxSharedMemoryPerBlockOptin (227 KiB on sm_90)
  size_t memory = size_t{16} << 30;
  bool host_register_read_only = true;
  bool host_register_fails = false;
  double deadlock_seconds = 10.0;
  double block_seconds = 300.0;  // a block that runs longer (without a fault) is an endless loop
  int device_count = 1;
};
DeviceProfile &Device();

struct StaticVar {
  void *address;
  size_t size, align;
  const char *file;
  int line;
};

struct KernelInfo {
  bool discovered = false;
  bool entered = false;
  std::string name;
  std::vector<StaticVar> vars;  // static __shared__ variables, in declaration order
  bool uses_dynamic = false;
  bool module_dynamic = false;  // its .cu file declares dynamic shared memory (in any kernel)
  size_t static_shared = 0;
  unsigned int launch_bounds = 0;
  int max_dynamic = 0;  // cudaFuncAttributeMaxDynamicSharedMemorySize
  bool max_dynamic_set = false;
  std::set<unsigned int> block_sizes;
};

struct KernelRegistry {
  std::mutex mutex;
  std::map<KernelKey, KernelInfo> kernels;
};
KernelRegistry &Kernels();
/// Runs the kernel up to its last __shared__ declaration once, learning its shared memory.
KernelInfo &Discover(const KernelThunk &thunk);

/// Where a thread waits: the barrier's source line (the caller's, for cub's internal ones).
struct Arrival {
  const char *file = nullptr;
  int line = 0;
  bool in_cub = false;
  uint32_t phase = ~0u;  // the barrier phase this record belongs to
};

/// A barrier among `members` threads (the block's __syncthreads, or a warp's shuffles), without
/// locks on the fast path: `counts` packs the arrivals of the open phase (low 32 bits) and the
/// members that returned (high 32 bits), so an arrival and a return always see each other.
/// Waiters sleep on `epoch` (a futex), which changes when the barrier opens or the block faults.
/// The arrivals' acq_rel increments and the release store of `open_phase` by the last arrival
/// order every thread's writes before the barrier with all reads after it (ThreadSanitizer
/// sees that too).
struct BarrierState {
  explicit BarrierState(int n) : members(n), arrivals(n) {}
  BarrierState(BarrierState &&o) noexcept : members(o.members), arrivals(std::move(o.arrivals)) {}
  int members;
  std::vector<Arrival> arrivals;  // by member index; written by each member before it arrives
  std::atomic<uint64_t> counts{0};
  std::atomic<uint32_t> open_phase{0};
  std::atomic<uint32_t> epoch{0};
  std::atomic<int> first_exited{-1};
};

constexpr size_t kShuffleBytesPerThread = 64;

/// One running thread block; its lock guards the barriers and the fault.
struct Block {
  Block(const KernelInfo &k, const LaunchSite &s, uint3 idx, dim3 block_dim, dim3 grid_dim, void *dynamic,
        size_t dynamic_size);

  const KernelInfo *kernel;
  LaunchSite site;
  uint3 index;
  dim3 dim, grid;
  int threads;
  void *dynamic_base;
  size_t dynamic_bytes;
  std::vector<unsigned char> shuffle;  // models warp registers for cub's warp reductions

  std::mutex mutex;  // guards the fault
  BarrierState barrier;
  std::vector<BarrierState> warps;
  bool aborted = false;  // guarded by mutex; `aborting` mirrors it for lock-free checks
  std::atomic<bool> aborting{false};
  std::string fault;
};

/// Sleeps while `word` holds `expected`, at most `seconds` (a Linux futex; spurious wakeups
/// and early returns are allowed: callers re-check their condition).
void FutexWait(std::atomic<uint32_t> &word, uint32_t expected, double seconds);
void FutexWakeAll(std::atomic<uint32_t> &word);

void SetLastError(cudaError_t error, const std::string &detail);
void RecordLaunch(const LaunchRecord &record);
/// Whether a kernel may dereference `p`: inside a cudaMalloc, cudaHostAlloc or cudaHostRegister range.
bool DeviceAccessible(const void *p);
void SetFatal(std::function<void(const std::string &)> handler);

}  // namespace cudasim::detail
