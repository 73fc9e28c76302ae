// cudasim's control interface for test drivers: the simulated device's profile, what the
// simulator saw (launches, allocations, kernels' shared memory), and how fatal faults end.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "cuda_runtime.h"

namespace cudasim {

/// Sets a property of the simulated device; throws std::invalid_argument naming a bad key or value.
///   profile            h200 (default: sm_90, 227 KiB opt-in shared memory) or t4 (sm_75, 64 KiB)
///   shared_optin       bytes of shared memory a block may use after opting in
///   memory             bytes of device memory (cudaMalloc fails beyond it)
///   host_register_read_only   1/0: cudaDevAttrHostRegisterReadOnlySupported
///   host_register_fails       1/0: cudaHostRegister refuses every range (cudaErrorNotSupported)
///   deadlock_seconds   how long a barrier waits before the block is reported as deadlocked
void Configure(const std::string &key, const std::string &value);

/// One kernel launch as the simulator saw it.
struct LaunchRecord {
  std::string kernel;  // short name with template arguments
  std::string site;    // file:line of the launch
  dim3 grid, block;
  size_t dynamic_shared;
  cudaError_t status;  // cudaSuccess, or the launch error
};

/// A kernel's attributes as the simulator derived them (by running it up to its last
/// __shared__ declaration): what cudaFuncGetAttributes reports.
struct KernelRecord {
  std::string kernel;
  size_t static_shared;
  bool dynamic_shared;
  unsigned int launch_bounds;  // 0: none
  int max_dynamic_shared;      // current cudaFuncAttributeMaxDynamicSharedMemorySize
};

struct Stats {
  size_t device_bytes = 0;          // live cudaMalloc bytes
  size_t device_allocations = 0;    // cudaMalloc calls that succeeded, ever
  size_t pinned_bytes = 0;          // live cudaHostAlloc bytes
  size_t registered_bytes = 0;      // live cudaHostRegister bytes
  size_t registrations = 0;         // cudaHostRegister calls that succeeded, ever
  size_t func_set_attribute = 0;    // cudaFuncSetAttribute calls that succeeded, ever
};

Stats GetStats();
std::vector<LaunchRecord> TakeLaunches();  // since the last call
std::vector<KernelRecord> Kernels();

/// The simulator's explanation of this thread's last failed call if it failed with `status`
/// ("" otherwise): CUDA itself returns only a code; CUDA_CALL appends this to its message.
std::string LastErrorDetail(cudaError_t status);

/// Called (then the process exits) when threads cannot be stopped: a deadlock or an endless
/// loop leaves OS threads running that no exception can unwind.
void SetFatalHandler(std::function<void(const std::string &)> handler);

}  // namespace cudasim
