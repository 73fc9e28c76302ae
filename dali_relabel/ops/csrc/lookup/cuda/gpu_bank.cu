// Process-wide device copies and host registrations of serving banks (see gpu_bank.h).
#include "lookup/cuda/gpu_bank.h"

#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace dali_relabel {
namespace {

std::string CudaErrorText(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

/// Restores the calling thread's current device when it goes out of scope.
class CurrentDeviceGuard {
 public:
  explicit CurrentDeviceGuard(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    if (previous_ != device) cudaSetDevice(device);
  }
  ~CurrentDeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }

 private:
  int previous_ = -1;
};

double GiB(size_t bytes) { return bytes / double(1ull << 30); }

// --- device copies -------------------------------------------------------------------------------

struct DeviceCopy {
  int device = -1;
  std::mutex mutex;  // held while the first holder allocates and copies
  bool ready = false;
  void *arrays[3] = {nullptr, nullptr, nullptr};  // scores, classes, labels
  GpuBankView view;

  void Free() {
    CurrentDeviceGuard guard(device);
    for (void *&p : arrays) {
      // Errors are ignored: at interpreter exit the CUDA runtime may already be unloading,
      // and then the driver reclaims the memory with the context anyway.
      if (p) cudaFree(p);
      p = nullptr;
    }
    cudaGetLastError();
  }
  ~DeviceCopy() { Free(); }
};

void Populate(DeviceCopy &copy, const Bank &bank, cudaStream_t stream) {
  const NpyArray *src[3] = {&bank.scores(), &bank.classes(), &bank.labels()};
  size_t total = 0;
  for (const NpyArray *a : src) total += a->data_bytes;
  for (int i = 0; i < 3; ++i) {
    if (src[i]->data_bytes == 0) continue;
    const cudaError_t e = cudaMalloc(&copy.arrays[i], src[i]->data_bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();  // not sticky: clear it so later launches do not report it
      copy.Free();
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      cudaGetLastError();
      Fail(kLookupName, "cannot copy the bank ", bank.path(), " (", GiB(total), " GiB) to GPU ", copy.device,
           " (", CudaErrorText(e), "; ", GiB(free_bytes), " GiB free of ", GiB(total_bytes),
           "). Use bank_memory=\"host\" to leave the bank in host memory and read it over the bus.");
    }
  }
  // The mapping is pageable memory, so these copies are staged by the driver and effectively
  // synchronous; they run once per process and GPU.
  for (int i = 0; i < 3; ++i) {
    if (src[i]->data_bytes == 0) continue;
    const cudaError_t e =
        cudaMemcpyAsync(copy.arrays[i], src[i]->data(), src[i]->data_bytes, cudaMemcpyHostToDevice, stream);
    if (e != cudaSuccess) {
      cudaGetLastError();
      copy.Free();
      Fail(kLookupName, "copying the bank ", bank.path(), " to GPU ", copy.device, " failed (", CudaErrorText(e),
           ").");
    }
  }
  // Other pipelines use the copy on their own streams: it must be complete before anyone
  // else can see ready == true.
  const cudaError_t e = cudaStreamSynchronize(stream);
  if (e != cudaSuccess) {
    copy.Free();
    Fail(kLookupName, "copying the bank ", bank.path(), " to GPU ", copy.device, " failed (", CudaErrorText(e), ").");
  }
  copy.view = GpuBankView{copy.arrays[0], copy.arrays[1], static_cast<const int32_t *>(copy.arrays[2])};
  copy.ready = true;
}

// --- host registrations --------------------------------------------------------------------------

struct HostRegistration {
  std::shared_ptr<const Bank> bank;   // keeps the mapping alive for as long as it is registered
  std::vector<const void *> registered;  // base addresses passed to cudaHostRegister
  std::vector<void *> pinned;            // fallback: private pinned copies
  const void *host[3] = {nullptr, nullptr, nullptr};  // scores, classes, labels as the GPU reads them

  ~HostRegistration() {
    for (const void *p : registered) cudaHostUnregister(const_cast<void *>(p));
    for (void *p : pinned) cudaFreeHost(p);
    cudaGetLastError();
  }
};

// Registers the mapping of each array in place when the system allows it, else copies the
// array into pinned memory.
//
// Why register the file mapping rather than always copy: the mapping is MAP_SHARED, so every
// rank on the node reads the same page-cache (or /dev/shm) pages; registering pins those pages
// and the GPUs read them over the bus with no extra RAM. A private cudaHostAlloc copy would
// cost each process the bank's full size in locked RAM (ImageNet: ~5.8 GB per rank).
// The mapping is PROT_READ, so it can only be pinned with cudaHostRegisterReadOnly (the driver
// otherwise asks the kernel for writable pages and fails); that flag needs a device attribute
// (HostRegisterReadOnlySupported) and some kernels/filesystems refuse to long-term pin file
// pages at all. In those cases we fall back to the pinned copy and say so once.
void Register(HostRegistration &reg, const Bank &bank, int device) {
  int read_only_ok = 0;
  if (cudaDeviceGetAttribute(&read_only_ok, cudaDevAttrHostRegisterReadOnlySupported, device) != cudaSuccess)
    read_only_ok = 0;
  cudaGetLastError();
  const NpyArray *src[3] = {&bank.scores(), &bank.classes(), &bank.labels()};
  for (int i = 0; i < 3; ++i) {
    const MappedFile &file = *src[i]->file;
    cudaError_t e = cudaErrorNotSupported;
    if (read_only_ok) {
      // The whole file mapping: page-aligned, and the .npy header in front of the data is tiny.
      e = cudaHostRegister(const_cast<unsigned char *>(file.data()), file.size(),
                           cudaHostRegisterPortable | cudaHostRegisterMapped | cudaHostRegisterReadOnly);
    }
    if (e == cudaSuccess) {
      reg.registered.push_back(file.data());
      reg.host[i] = src[i]->data();
      continue;
    }
    cudaGetLastError();  // a failed registration is not sticky; clear it for later launches
    std::fprintf(stderr,
                 "relabel.lookup: warning: cannot page-lock the memory-mapped %s (%s); using a private pinned "
                 "copy of %.2f GiB in this process instead (bank_memory=\"host\").\n",
                 file.path().c_str(), read_only_ok ? CudaErrorText(e).c_str() : "read-only registration unsupported",
                 GiB(src[i]->data_bytes));
    void *p = nullptr;
    e = cudaHostAlloc(&p, std::max<size_t>(src[i]->data_bytes, 1), cudaHostAllocPortable | cudaHostAllocMapped);
    if (e != cudaSuccess) {
      cudaGetLastError();
      Fail(kLookupName, "cannot allocate ", GiB(src[i]->data_bytes), " GiB of pinned host memory for ", file.path(),
           " (", CudaErrorText(e), ").");
    }
    reg.pinned.push_back(p);
    std::memcpy(p, src[i]->data(), src[i]->data_bytes);
    reg.host[i] = p;
  }
}

struct HostView {
  std::shared_ptr<HostRegistration> registration;
  GpuBankView view;
};

std::mutex &RegistryMutex() {
  static auto *m = new std::mutex;  // leaked: operators may die during interpreter shutdown
  return *m;
}

}  // namespace

std::shared_ptr<const GpuBankView> AcquireDeviceCopy(const std::shared_ptr<const Bank> &bank, int device,
                                                     cudaStream_t stream) {
  static auto *copies = new std::map<std::pair<std::string, int>, std::weak_ptr<DeviceCopy>>;
  std::shared_ptr<DeviceCopy> copy;
  {
    std::lock_guard<std::mutex> guard(RegistryMutex());
    for (auto it = copies->begin(); it != copies->end();) it = it->second.expired() ? copies->erase(it) : std::next(it);
    auto &slot = (*copies)[{bank->key(), device}];
    copy = slot.lock();
    if (!copy) {
      copy = std::make_shared<DeviceCopy>();
      copy->device = device;
      slot = copy;
    }
  }
  // Populated outside the registry lock (copying GBs takes seconds) but under the copy's own
  // lock: concurrent first users of the same (bank, GPU) wait for one copy instead of making two.
  std::lock_guard<std::mutex> guard(copy->mutex);
  if (!copy->ready) Populate(*copy, *bank, stream);
  return std::shared_ptr<const GpuBankView>(copy, &copy->view);
}

std::shared_ptr<const GpuBankView> AcquireHostMapped(const std::shared_ptr<const Bank> &bank, int device) {
  static auto *registrations = new std::map<std::string, std::weak_ptr<HostRegistration>>;
  std::shared_ptr<HostRegistration> reg;
  {
    // Registration is page-locking, quick next to a device copy: done under the registry lock.
    std::lock_guard<std::mutex> guard(RegistryMutex());
    for (auto it = registrations->begin(); it != registrations->end();)
      it = it->second.expired() ? registrations->erase(it) : std::next(it);
    auto &slot = (*registrations)[bank->key()];
    reg = slot.lock();
    if (!reg) {
      auto fresh = std::make_shared<HostRegistration>();
      fresh->bank = bank;
      Register(*fresh, *bank, device);
      reg = fresh;
      slot = reg;
    }
  }
  auto view = std::make_shared<HostView>();
  view->registration = reg;
  void *dev[3] = {nullptr, nullptr, nullptr};
  const size_t bytes[3] = {bank->scores().data_bytes, bank->classes().data_bytes, bank->labels().data_bytes};
  for (int i = 0; i < 3; ++i) {
    if (bytes[i] == 0) continue;  // an empty bank: nothing to address (every index is out of range)
    // Portable + mapped memory has a device address on every device (the host address itself
    // under unified addressing); ask the driver rather than assume.
    const cudaError_t e = cudaHostGetDevicePointer(&dev[i], const_cast<void *>(reg->host[i]), 0);
    if (e != cudaSuccess) {
      cudaGetLastError();
      Fail(kLookupName, "GPU ", device, " cannot address the page-locked bank ", bank->path(), " (",
           CudaErrorText(e), "); use bank_memory=\"device\".");
    }
  }
  view->view = GpuBankView{dev[0], dev[1], static_cast<const int32_t *>(dev[2])};
  return std::shared_ptr<const GpuBankView>(view, &view->view);
}

}  // namespace dali_relabel
