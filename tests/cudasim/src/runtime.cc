// cudasim: the CUDA runtime API on simulated device memory, and the simulated device's profile.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <sstream>
#include <stdexcept>

#include "cudasim/state.h"

namespace cudasim {
namespace detail {
namespace {

thread_local cudaError_t last_error = cudaSuccess;
thread_local std::string last_error_detail;
thread_local cudaError_t last_error_detail_code = cudaSuccess;
thread_local int current_device = 0;

enum class MemKind { kDevice, kPinnedHost, kRegisteredHost };

struct Region {
  size_t size;
  MemKind kind;
  unsigned int flags;
};

struct Memory {
  std::mutex mutex;
  std::map<uintptr_t, Region> regions;  // by start address
  Stats stats;
  std::vector<LaunchRecord> launches;
};

Memory &Mem() {
  static auto *m = new Memory;
  return *m;
}

cudaError_t Fail(cudaError_t e, const std::string &detail) {
  SetLastError(e, "cudasim: " + detail);
  return e;
}

// The region containing [p, p + n) (n = 0: containing p, or ending at it), or nullptr.
const Region *FindLocked(Memory &m, const void *p, size_t n, uintptr_t *start = nullptr) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = m.regions.upper_bound(a);
  if (it == m.regions.begin()) return nullptr;
  --it;
  if (a + n > it->first + it->second.size || a > it->first + it->second.size) return nullptr;
  if (start) *start = it->first;
  return &it->second;
}

bool OverlapsLocked(Memory &m, const void *p, size_t n) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = m.regions.lower_bound(a + n);
  if (it == m.regions.begin()) return false;
  --it;
  return it->first + it->second.size > a;
}

void *AllocateAligned(size_t size, size_t align) {
  return ::operator new[](std::max<size_t>(size, 1), std::align_val_t{align});
}
void FreeAligned(void *p, size_t align) { ::operator delete[](p, std::align_val_t{align}); }

const char *KindName(MemKind k) {
  switch (k) {
    case MemKind::kDevice: return "device memory";
    case MemKind::kPinnedHost: return "pinned host memory";
    default: return "registered host memory";
  }
}

}  // namespace

DeviceProfile &Device() {
  static auto *d = new DeviceProfile;
  return *d;
}

void SetLastError(cudaError_t error, const std::string &detail) {
  last_error = error;
  last_error_detail = detail;
  last_error_detail_code = error;
}

void RecordLaunch(const LaunchRecord &record) {
  std::lock_guard<std::mutex> guard(Mem().mutex);
  Mem().launches.push_back(record);
}

bool DeviceAccessible(const void *p) {
  std::lock_guard<std::mutex> guard(Mem().mutex);
  return FindLocked(Mem(), p, 0) != nullptr;
}

cudaError_t FuncGetAttributes(cudaFuncAttributes *attr, const KernelThunk &kernel) {
  if (!attr) return Fail(cudaErrorInvalidValue, "cudaFuncGetAttributes: attr is null");
  KernelInfo &k = Discover(kernel);
  std::lock_guard<std::mutex> guard(Kernels().mutex);
  *attr = cudaFuncAttributes{};
  attr->sharedSizeBytes = k.static_shared;
  attr->maxThreadsPerBlock = static_cast<int>(k.launch_bounds ? k.launch_bounds : Device().max_threads);
  attr->maxDynamicSharedSizeBytes = k.max_dynamic;
  attr->ptxVersion = attr->binaryVersion = Device().cc_major * 10 + Device().cc_minor;
  attr->preferredShmemCarveout = -1;
  return cudaSuccess;
}

cudaError_t FuncSetAttribute(const KernelThunk &kernel, cudaFuncAttribute attr, int value) {
  KernelInfo &k = Discover(kernel);
  std::lock_guard<std::mutex> guard(Kernels().mutex);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || k.static_shared + static_cast<size_t>(value) > Device().shared_optin) {
      std::ostringstream ss;
      ss << "cudaFuncSetAttribute(" << k.name << ", cudaFuncAttributeMaxDynamicSharedMemorySize, " << value
         << "): " << k.static_shared << " B static + " << value << " B exceed the device's " << Device().shared_optin
         << " B per block";
      return Fail(cudaErrorInvalidValue, ss.str());
    }
    k.max_dynamic = value;
    k.max_dynamic_set = true;
  } else if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) {
    if (value < -1 || value > 100) return Fail(cudaErrorInvalidValue, "carveout must be -1..100");
  } else {
    return Fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: attribute not simulated");
  }
  std::lock_guard<std::mutex> mg(Mem().mutex);
  ++Mem().stats.func_set_attribute;
  return cudaSuccess;
}

}  // namespace detail

using detail::Device;
using detail::Fail;
using detail::Mem;
using detail::MemKind;

void Configure(const std::string &key, const std::string &value) {
  auto &d = Device();
  auto number = [&] {
    char *end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    if (value.empty() || *end) throw std::invalid_argument("cudasim: " + key + " needs a number, got '" + value + "'");
    return v;
  };
  if (key == "profile") {
    if (value == "h200") {
      d = detail::DeviceProfile{};
    } else if (value == "t4") {
      d = detail::DeviceProfile{};
      d.name = "t4";
      d.cc_major = 7;
      d.cc_minor = 5;
      d.multiprocessors = 40;
      d.shared_optin = 65536;
      d.max_block[2] = 64;
      d.memory = size_t{15} << 30;
      d.host_register_read_only = false;
    } else {
      throw std::invalid_argument("cudasim: profile must be h200 or t4, got '" + value + "'");
    }
  } else if (key == "shared_optin") {
    d.shared_optin = static_cast<size_t>(number());
  } else if (key == "memory") {
    d.memory = static_cast<size_t>(number());
  } else if (key == "host_register_read_only") {
    d.host_register_read_only = number() != 0;
  } else if (key == "host_register_fails") {
    d.host_register_fails = number() != 0;
  } else if (key == "deadlock_seconds") {
    d.deadlock_seconds = number();
  } else if (key == "block_seconds") {
    d.block_seconds = number();
  } else {
    throw std::invalid_argument("cudasim: unknown device property '" + key + "'");
  }
}

Stats GetStats() {
  std::lock_guard<std::mutex> guard(Mem().mutex);
  return Mem().stats;
}

std::vector<LaunchRecord> TakeLaunches() {
  std::lock_guard<std::mutex> guard(Mem().mutex);
  std::vector<LaunchRecord> out;
  out.swap(Mem().launches);
  return out;
}

std::string LastErrorDetail(cudaError_t status) {
  return status == detail::last_error_detail_code ? detail::last_error_detail : std::string();
}

}  // namespace cudasim

using namespace cudasim::detail;  // NOLINT: the C API below is global, as CUDA's

const char *cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorCudartUnloading: return "cudaErrorCudartUnloading";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorHostMemoryAlreadyRegistered: return "cudaErrorHostMemoryAlreadyRegistered";
    case cudaErrorHostMemoryNotRegistered: return "cudaErrorHostMemoryNotRegistered";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
  }
  return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorHostMemoryAlreadyRegistered: return "part or all of the requested memory range is already mapped";
    case cudaErrorHostMemoryNotRegistered: return "pointer does not correspond to a registered memory region";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    default: return "unknown error";
  }
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = cudasim::detail::last_error;
  cudasim::detail::last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return cudasim::detail::last_error; }

cudaError_t cudaGetDeviceCount(int *count) {
  *count = Device().device_count;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
  *device = cudasim::detail::current_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= Device().device_count)
    return Fail(cudaErrorInvalidDevice, "cudaSetDevice(" + std::to_string(device) + ")");
  cudasim::detail::current_device = device;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
  const auto &d = Device();
  if (device < 0 || device >= d.device_count)
    return Fail(cudaErrorInvalidDevice, "cudaDeviceGetAttribute on device " + std::to_string(device));
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = static_cast<int>(d.max_threads); break;
    case cudaDevAttrMaxBlockDimX: *value = static_cast<int>(d.max_block[0]); break;
    case cudaDevAttrMaxBlockDimY: *value = static_cast<int>(d.max_block[1]); break;
    case cudaDevAttrMaxBlockDimZ: *value = static_cast<int>(d.max_block[2]); break;
    case cudaDevAttrMaxGridDimX: *value = static_cast<int>(d.max_grid[0]); break;
    case cudaDevAttrMaxGridDimY: *value = static_cast<int>(d.max_grid[1]); break;
    case cudaDevAttrMaxGridDimZ: *value = static_cast<int>(d.max_grid[2]); break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(d.shared_per_block); break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = d.multiprocessors; break;
    case cudaDevAttrComputeCapabilityMajor: *value = d.cc_major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = d.cc_minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(d.shared_optin); break;
    case cudaDevAttrHostRegisterReadOnlySupported: *value = d.host_register_read_only ? 1 : 0; break;
    default: return Fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute not simulated");
  }
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

cudaError_t cudaStreamCreate(cudaStream_t *stream) {
  static std::atomic<uintptr_t> next{0x5000};
  *stream = reinterpret_cast<cudaStream_t>(next.fetch_add(0x10));
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }  // launches are synchronous

cudaError_t cudaMalloc(void **ptr, size_t size) {
  auto &m = Mem();
  std::lock_guard<std::mutex> guard(m.mutex);
  if (m.stats.device_bytes + size > Device().memory) {
    *ptr = nullptr;
    return Fail(cudaErrorMemoryAllocation, "cudaMalloc(" + std::to_string(size) + ") exceeds the device's " +
                                               std::to_string(Device().memory) + " B");
  }
  void *p = AllocateAligned(size, 256);
  std::memset(p, 0xff, size);  // uninitialized device memory reads as NaN, never as zeros
  m.regions[reinterpret_cast<uintptr_t>(p)] = Region{size, MemKind::kDevice, 0};
  m.stats.device_bytes += size;
  ++m.stats.device_allocations;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
  if (!ptr) return cudaSuccess;
  auto &m = Mem();
  std::lock_guard<std::mutex> guard(m.mutex);
  auto it = m.regions.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == m.regions.end() || it->second.kind != MemKind::kDevice)
    return Fail(cudaErrorInvalidValue, "cudaFree of a pointer that cudaMalloc did not return");
  m.stats.device_bytes -= it->second.size;
  m.regions.erase(it);
  FreeAligned(ptr, 256);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
  std::lock_guard<std::mutex> guard(Mem().mutex);
  *total_bytes = Device().memory;
  *free_bytes = Device().memory - Mem().stats.device_bytes;
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned int) {
  auto &m = Mem();
  std::lock_guard<std::mutex> guard(m.mutex);
  void *p = AllocateAligned(size, 4096);
  m.regions[reinterpret_cast<uintptr_t>(p)] = Region{size, MemKind::kPinnedHost, 0};
  m.stats.pinned_bytes += size;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void **ptr, size_t size) { return cudaHostAlloc(ptr, size, cudaHostAllocDefault); }

cudaError_t cudaFreeHost(void *ptr) {
  if (!ptr) return cudaSuccess;
  auto &m = Mem();
  std::lock_guard<std::mutex> guard(m.mutex);
  auto it = m.regions.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == m.regions.end() || it->second.kind != MemKind::kPinnedHost)
    return Fail(cudaErrorInvalidValue, "cudaFreeHost of a pointer that cudaHostAlloc did not return");
  m.stats.pinned_bytes -= it->second.size;
  m.regions.erase(it);
  FreeAligned(ptr, 4096);
  return cudaSuccess;
}

cudaError_t cudaHostRegister(void *ptr, size_t size, unsigned int flags) {
  auto &m = Mem();
  std::lock_guard<std::mutex> guard(m.mutex);
  if (!ptr || size == 0) return Fail(cudaErrorInvalidValue, "cudaHostRegister of an empty range");
  if ((flags & cudaHostRegisterReadOnly) && !Device().host_register_read_only)
    return Fail(cudaErrorNotSupported, "cudaHostRegisterReadOnly is not supported by this device");
  if (Device().host_register_fails)
    return Fail(cudaErrorNotSupported, "cudaHostRegister refused (configured: host_register_fails)");
  if (OverlapsLocked(m, ptr, size))
    return Fail(cudaErrorHostMemoryAlreadyRegistered, "cudaHostRegister of a range that overlaps another");
  m.regions[reinterpret_cast<uintptr_t>(ptr)] = Region{size, MemKind::kRegisteredHost, flags};
  m.stats.registered_bytes += size;
  ++m.stats.registrations;
  return cudaSuccess;
}

cudaError_t cudaHostUnregister(void *ptr) {
  auto &m = Mem();
  std::lock_guard<std::mutex> guard(m.mutex);
  auto it = m.regions.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == m.regions.end() || it->second.kind != MemKind::kRegisteredHost)
    return Fail(cudaErrorHostMemoryNotRegistered, "cudaHostUnregister of a pointer cudaHostRegister did not take");
  m.stats.registered_bytes -= it->second.size;
  m.regions.erase(it);
  return cudaSuccess;
}

cudaError_t cudaHostGetDevicePointer(void **device_ptr, void *host_ptr, unsigned int flags) {
  auto &m = Mem();
  std::lock_guard<std::mutex> guard(m.mutex);
  const Region *r = FindLocked(m, host_ptr, 1);
  if (flags != 0) return Fail(cudaErrorInvalidValue, "cudaHostGetDevicePointer: flags must be 0");
  const bool mapped = r && (r->kind == MemKind::kPinnedHost ||
                            (r->kind == MemKind::kRegisteredHost && (r->flags & cudaHostRegisterMapped)));
  if (!mapped)
    return Fail(cudaErrorInvalidValue, "cudaHostGetDevicePointer of memory that is not mapped pinned host memory");
  *device_ptr = host_ptr;  // unified addressing: the same address
  return cudaSuccess;
}

namespace {

// Checks that [p, p + n) is `want_device` memory (or not), naming the side of the copy.
cudaError_t CheckSide(const void *p, size_t n, bool want_device, const char *side, const char *call) {
  auto &m = Mem();
  std::lock_guard<std::mutex> guard(m.mutex);
  uintptr_t start = 0;
  const Region *r = FindLocked(m, p, n, &start);
  const bool is_device = r && r->kind == MemKind::kDevice;
  if (want_device && !is_device) {
    const Region *partial = FindLocked(m, p, 0, &start);
    if (partial && partial->kind == MemKind::kDevice)
      return Fail(cudaErrorInvalidValue, std::string(call) + ": the " + side + " range of " + std::to_string(n) +
                                             " B runs past the end of its " + std::to_string(partial->size) +
                                             " B device allocation");
    return Fail(cudaErrorInvalidValue, std::string(call) + ": the " + side + " is " +
                                           (r ? KindName(r->kind) : "pageable host memory") +
                                           ", the copy's kind says device memory");
  }
  if (!want_device) {
    const Region *any = FindLocked(m, p, 0, &start);
    if (any && any->kind == MemKind::kDevice)
      return Fail(cudaErrorInvalidValue,
                  std::string(call) + ": the " + side + " is device memory, the copy's kind says host memory");
  }
  return cudaSuccess;
}

bool IsDevice(const void *p) {
  auto &m = Mem();
  std::lock_guard<std::mutex> guard(m.mutex);
  const Region *r = FindLocked(m, p, 0);
  return r && r->kind == MemKind::kDevice;
}

}  // namespace

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind) {
  return cudaMemcpyAsync(dst, src, count, kind, nullptr);
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind, cudaStream_t) {
  if (count == 0) return cudaSuccess;
  const char *call = "cudaMemcpyAsync";
  bool dst_dev, src_dev;
  switch (kind) {
    case cudaMemcpyHostToHost: dst_dev = false, src_dev = false; break;
    case cudaMemcpyHostToDevice: dst_dev = true, src_dev = false; break;
    case cudaMemcpyDeviceToHost: dst_dev = false, src_dev = true; break;
    case cudaMemcpyDeviceToDevice: dst_dev = true, src_dev = true; break;
    case cudaMemcpyDefault: dst_dev = IsDevice(dst), src_dev = IsDevice(src); break;
    default: return Fail(cudaErrorInvalidMemcpyDirection, "cudaMemcpyAsync: bad kind");
  }
  if (cudaError_t e = CheckSide(dst, count, dst_dev, "destination", call)) return e;
  if (cudaError_t e = CheckSide(src, count, src_dev, "source", call)) return e;
  std::memmove(dst, src, count);
  return cudaSuccess;
}

cudaError_t cudaMemset(void *ptr, int value, size_t count) { return cudaMemsetAsync(ptr, value, count, nullptr); }

cudaError_t cudaMemsetAsync(void *ptr, int value, size_t count, cudaStream_t) {
  if (count == 0) return cudaSuccess;
  if (cudaError_t e = CheckSide(ptr, count, true, "destination", "cudaMemsetAsync")) return e;
  std::memset(ptr, value, count);
  return cudaSuccess;
}
