// cudasim: kernel execution (thread pool, checked barriers, shared memory) and launch checks.
#include "cudasim/sim.h"

#include <algorithm>
#include <chrono>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <sstream>
#include <thread>

#include <cub/block/block_reduce.cuh>
#include <source_location>

#include "cudasim/state.h"

namespace cudasim {
namespace detail {

thread_local bool discovering = false;

namespace {

thread_local KernelInfo *discovery_target = nullptr;
thread_local Block *current_block = nullptr;
thread_local int current_tid = -1;

struct Abort {};  // unwinds a CUDA thread of a block that has faulted

std::function<void(const std::string &)> &FatalHandler() {
  static auto *handler = new std::function<void(const std::string &)>;
  return *handler;
}

[[noreturn]] void Fatal(const std::string &message) {
  if (*&FatalHandler()) FatalHandler()(message);
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  std::_Exit(70);
}

std::string Dim(const uint3 &d) {
  std::ostringstream ss;
  ss << "(" << d.x << ", " << d.y << ", " << d.z << ")";
  return ss.str();
}
std::string Dim(const dim3 &d) { return Dim(static_cast<uint3>(d)); }

// "void ns::K(args) [with T = float]" -> "ns::K<T = float>" style short name.
std::string ShortName(const std::string &pretty) {
  std::string name = pretty;
  const auto paren = name.find('(');
  std::string head = paren == std::string::npos ? name : name.substr(0, paren);
  const auto space = head.rfind(' ');
  if (space != std::string::npos) head = head.substr(space + 1);
  const auto with = name.find("[with ");
  if (with != std::string::npos) head += " " + name.substr(with);
  return head;
}

uint3 ThreadIndex(int linear, const dim3 &block) {
  return uint3{static_cast<unsigned>(linear % block.x), static_cast<unsigned>(linear / block.x % block.y),
               static_cast<unsigned>(linear / (block.x * block.y))};
}

}  // namespace

// --- kernels -------------------------------------------------------------------------------------

KernelRegistry &Kernels() {
  static auto *registry = new KernelRegistry;
  return *registry;
}

void KernelEntry(unsigned int launch_bounds, const char *pretty_function, bool module_dynamic_shared) {
  if (!discovering) return;
  discovery_target->name = ShortName(pretty_function);
  discovery_target->launch_bounds = launch_bounds;
  discovery_target->module_dynamic = module_dynamic_shared;
  discovery_target->entered = true;
}

void NoteStaticShared(void *address, size_t size, size_t align, const char *file, int line) {
  KernelInfo &k = *discovery_target;
  for (const StaticVar &v : k.vars)
    if (v.address == address) return;
  k.vars.push_back(StaticVar{address, size, align, file, line});
}

void NoteDynamicShared(const char *, int) { discovery_target->uses_dynamic = true; }

KernelInfo &Discover(const KernelThunk &thunk) {
  KernelRegistry &reg = Kernels();
  std::lock_guard<std::mutex> guard(reg.mutex);
  KernelInfo &k = reg.kernels[thunk.key];
  if (k.discovered) return k;
  // The rewrite made the kernel return right after its last __shared__ declaration when
  // `discovering` is set, before it reads any argument: run it once on this thread.
  discovering = true;
  discovery_target = &k;
  threadIdx = uint3{0, 0, 0};
  blockIdx = uint3{0, 0, 0};
  try {
    thunk.discover();
  } catch (...) {
    discovering = false;
    discovery_target = nullptr;
    throw;
  }
  discovering = false;
  discovery_target = nullptr;
  if (!k.entered)
    throw KernelFault("cudasim: a kernel was launched that tests/cudasim/rewrite.py did not rewrite (no "
                      "kernel-entry hook); compile its .cu file through the rewrite");
  // ptxas's layout: declaration order, natural alignment; in a module with dynamic shared memory
  // (in this kernel or another of its .cu file) the static part is padded to 16 bytes, where the
  // dynamic buffer starts. (tests/ops/test_cudasim_nvcc.py compares this with ptxas.)
  size_t offset = 0;
  for (const StaticVar &v : k.vars) offset = (offset + v.align - 1) / v.align * v.align + v.size;
  if (k.uses_dynamic || k.module_dynamic) offset = (offset + 15) / 16 * 16;
  k.static_shared = offset;
  k.max_dynamic = static_cast<int>(Device().shared_per_block) - static_cast<int>(offset);
  k.discovered = true;
  return k;
}

// --- blocks ----------------------------------------------------------------------------------------

namespace {

std::string Where(const Block &b, int tid) {
  std::ostringstream ss;
  ss << "kernel " << b.kernel->name << " launched at " << b.site.file << ":" << b.site.line << ", block "
     << Dim(b.index);
  if (tid >= 0) ss << ", thread " << Dim(ThreadIndex(tid, b.dim));
  return ss.str();
}

void Wake(BarrierState &s) {
  s.epoch.fetch_add(1, std::memory_order_release);
  FutexWakeAll(s.epoch);
}

// Records the first fault of the block and wakes every waiting thread (they unwind).
void FaultLocked(Block &b, const std::string &what) {
  if (!b.aborted) {
    b.aborted = true;
    b.fault = what;
    b.aborting.store(true, std::memory_order_release);
  }
  Wake(b.barrier);
  for (BarrierState &w : b.warps) Wake(w);
}

std::string SiteText(const Arrival &a) {
  return std::string(a.file) + ":" + std::to_string(a.line) + (a.in_cub ? " (inside cub::BlockReduce)" : "");
}

// "N threads at file:line (first: thread (x, y, z)); ..." for the members waiting in `phase`.
std::string ArrivalSummary(const BarrierState &s, uint32_t phase, int first_tid, const dim3 &dim) {
  std::map<std::string, std::pair<int, int>> by_site;  // site -> (count, first member)
  for (int m = 0; m < s.members; ++m) {
    const Arrival &a = s.arrivals[m];
    if (a.phase != phase) continue;
    auto &e = by_site[SiteText(a)];
    if (e.first++ == 0) e.second = m;
  }
  std::ostringstream ss;
  bool first = true;
  for (const auto &[site, e] : by_site) {
    ss << (first ? "" : "; ") << e.first << " thread" << (e.first == 1 ? "" : "s") << " at " << site
       << " (first: thread " << Dim(ThreadIndex(first_tid + e.second, dim)) << ")";
    first = false;
  }
  return ss.str();
}

std::chrono::steady_clock::duration DeadlockTimeout() {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(Device().deadlock_seconds));
}

constexpr uint64_t kExitUnit = uint64_t{1} << 32;

// A barrier among the members of `s` (the block, or one warp; `member` is the caller's index in
// it, `first_tid` the block-linear index of member 0): all must arrive, from the same source
// line, and none may have returned. With `wait` false the caller only arrives (its writes are
// published to whoever waits) and goes on.
void Barrier(Block &b, BarrierState &s, int member, int first_tid, const char *file, int line, bool in_cub,
             const char *what, bool wait = true) {
  const int tid = current_tid;
  if (b.aborting.load(std::memory_order_acquire)) throw Abort{};
  const uint32_t phase = s.open_phase.load(std::memory_order_acquire);
  s.arrivals[member] = Arrival{file, line, in_cub, phase};
  const uint64_t before = s.counts.fetch_add(1, std::memory_order_acq_rel);
  const uint32_t exited = static_cast<uint32_t>(before >> 32);
  if (exited > 0) {
    std::lock_guard<std::mutex> guard(b.mutex);
    std::ostringstream ss;
    ss << "cudasim: " << what << " at " << SiteText(s.arrivals[member]) << " reached after " << exited << " of "
       << s.members << " threads had returned from the kernel (first: thread "
       << Dim(ThreadIndex(s.first_exited.load(), b.dim)) << "); every thread must reach every barrier. In "
       << Where(b, tid);
    FaultLocked(b, ss.str());
    throw Abort{};
  }
  if (static_cast<uint32_t>(before) + 1 == static_cast<uint32_t>(s.members)) {
    // The last arrival: check that everyone waits at the same line, then open.
    const Arrival &a0 = s.arrivals[0];
    bool divergent = false;
    for (int m = 1; m < s.members && !divergent; ++m)
      divergent = s.arrivals[m].line != a0.line || std::strcmp(s.arrivals[m].file, a0.file) != 0;
    if (divergent) {
      std::lock_guard<std::mutex> guard(b.mutex);
      std::ostringstream ss;
      ss << "cudasim: divergent " << what << ": the threads of one block wait at different barriers: "
         << ArrivalSummary(s, phase, first_tid, b.dim) << ". In " << Where(b, -1);
      FaultLocked(b, ss.str());
    }
    s.counts.fetch_sub(static_cast<uint64_t>(s.members), std::memory_order_relaxed);
    s.open_phase.store(phase + 1, std::memory_order_release);
    Wake(s);
    if (b.aborting.load(std::memory_order_acquire)) throw Abort{};
    return;
  }
  if (!wait) return;  // an arrival that need not see the others' writes (see CubWarpGather)
  const auto deadline = std::chrono::steady_clock::now() + DeadlockTimeout();
  for (;;) {
    const uint32_t epoch = s.epoch.load(std::memory_order_acquire);
    if (s.open_phase.load(std::memory_order_acquire) != phase) break;
    if (b.aborting.load(std::memory_order_acquire)) throw Abort{};
    const double left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      std::lock_guard<std::mutex> guard(b.mutex);
      if (s.open_phase.load(std::memory_order_acquire) != phase || b.aborted) continue;
      const uint32_t arrived = static_cast<uint32_t>(s.counts.load(std::memory_order_acquire));
      std::ostringstream ss;
      ss << "cudasim: deadlock: " << arrived << " of " << s.members << " threads waited "
         << Device().deadlock_seconds << " s at " << what << " (" << ArrivalSummary(s, phase, first_tid, b.dim)
         << "); the other " << s.members - static_cast<int>(arrived)
         << " neither arrived nor returned (an endless loop, or waiting for the waiting threads). In "
         << Where(b, -1);
      FaultLocked(b, ss.str());
      throw Abort{};
    }
    FutexWait(s.epoch, epoch, left);
  }
  if (b.aborting.load(std::memory_order_acquire)) throw Abort{};
}

// Member `member` of `s` returned from the kernel; faults if others wait at the barrier.
void Exit(Block &b, BarrierState &s, int member, int first_tid, const char *what) {
  const int tid = first_tid + member;
  int none = -1;
  s.first_exited.compare_exchange_strong(none, tid);
  const uint64_t before = s.counts.fetch_add(kExitUnit, std::memory_order_acq_rel);
  const uint32_t waiting = static_cast<uint32_t>(before);
  if (waiting > 0) {
    std::lock_guard<std::mutex> guard(b.mutex);
    if (b.aborted) return;
    std::ostringstream ss;
    ss << "cudasim: thread " << Dim(ThreadIndex(tid, b.dim)) << " returned from the kernel while " << waiting
       << " thread" << (waiting == 1 ? "" : "s") << " wait at " << what << " ("
       << ArrivalSummary(s, s.open_phase.load(std::memory_order_acquire), first_tid, b.dim)
       << "); every thread must reach every barrier. In " << Where(b, -1);
    FaultLocked(b, ss.str());
  }
}

Block &CurrentBlock(const char *what) {
  if (!current_block) throw KernelFault(std::string("cudasim: ") + what + " called outside a kernel");
  return *current_block;
}


}  // namespace

void *DynamicSharedBase(const char *, int) { return CurrentBlock("extern __shared__").dynamic_base; }

void *BlockShuffleScratch(size_t bytes_per_thread) {
  Block &b = CurrentBlock("cub::BlockReduce");
  if (bytes_per_thread > kShuffleBytesPerThread)
    throw KernelFault("cudasim: cub::BlockReduce of a type larger than 64 bytes is not simulated");
  return b.shuffle.data();
}

void CheckCubBlockSize(const char *what, int expected_threads, const std::source_location &where) {
  Block &b = CurrentBlock(what);
  if (b.threads == expected_threads) return;
  std::lock_guard<std::mutex> guard(b.mutex);
  std::ostringstream ss;
  ss << "cudasim: " << what << " for " << expected_threads << " threads used at " << where.file_name() << ":"
     << where.line() << " in a block of " << b.threads << " threads " << Dim(b.dim)
     << " (cub's result is undefined then). In " << Where(b, current_tid);
  FaultLocked(b, ss.str());
  throw Abort{};
}

void CubBarrier(const std::source_location &where) {
  Block &b = CurrentBlock("cub::BlockReduce");
  Barrier(b, b.barrier, current_tid, 0, where.file_name(), static_cast<int>(where.line()), true, "__syncthreads");
}

void CubWarpGather(const std::source_location &where) {
  Block &b = CurrentBlock("cub::BlockReduce");
  const int warp = current_tid / 32, lane = current_tid % 32;
  Barrier(b, b.warps[warp], lane, warp * 32, where.file_name(), static_cast<int>(where.line()), true,
          "a warp shuffle", /*wait=*/lane == 0);
}

// --- the worker pool: one OS thread per CUDA thread of a block, reused ----------------------------

namespace {

class WorkerPool {
 public:
  static WorkerPool &Get() {
    static auto *pool = new WorkerPool;  // leaked: workers sleep on its members until exit
    return *pool;
  }

  /// Runs `b.threads` CUDA threads of block `b` concurrently; returns when all have returned.
  void Run(Block &b, const std::function<void()> &body) {
    Grow(b.threads);
    job_ = &b;
    body_ = &body;
    done_.store(0, std::memory_order_relaxed);
    // Each worker sleeps on its own word: wake exactly the block's threads.
    for (int i = 0; i < b.threads; ++i) {
      workers_[i]->go.fetch_add(1, std::memory_order_release);
      FutexWakeAll(workers_[i]->go);
    }
    auto last_progress = std::chrono::steady_clock::now();
    uint32_t last_done = 0;
    for (;;) {
      const uint32_t done = done_.load(std::memory_order_acquire);
      if (done == static_cast<uint32_t>(b.threads)) break;
      FutexWait(done_, done, 0.2);
      const auto now = std::chrono::steady_clock::now();
      const uint32_t now_done = done_.load(std::memory_order_acquire);
      if (now_done != last_done) {
        last_done = now_done;
        last_progress = now;
        continue;
      }
      bool aborted;
      std::string fault;
      {
        std::lock_guard<std::mutex> bg(b.mutex);
        aborted = b.aborted;
        fault = b.fault;
      }
      // Threads that do not finish after the block faulted are stuck outside any barrier
      // (endless loops); without a fault, a block may legitimately run long, up to a limit.
      const double grace = aborted ? Device().deadlock_seconds + 2.0 : Device().block_seconds;
      if (now - last_progress > std::chrono::duration<double>(grace)) {
        std::ostringstream ss;
        ss << (aborted ? fault + "\n" : std::string()) << "cudasim: " << b.threads - now_done << " of "
           << b.threads << " threads did not return within " << grace << " s"
           << (aborted ? " after the fault (stuck outside any barrier)" : " (an endless loop?)") << ". In "
           << Where(b, -1) << ". Exiting: the stuck OS threads cannot be stopped.";
        Fatal(ss.str());
      }
    }
    job_ = nullptr;
    body_ = nullptr;
  }

 private:
  struct Worker {
    std::atomic<uint32_t> go{0};
  };

  void Grow(int n) {
    while (static_cast<int>(workers_.size()) < n) {
      workers_.push_back(std::make_unique<Worker>());
      Worker *w = workers_.back().get();
      const int index = static_cast<int>(workers_.size()) - 1;
      std::thread([this, w, index] { Work(*w, index); }).detach();
    }
  }

  void Work(Worker &self, int index) {
    uint32_t seen = 0;
    for (;;) {
      uint32_t go;
      while ((go = self.go.load(std::memory_order_acquire)) == seen) FutexWait(self.go, seen, 3600.0);
      seen = go;
      Block *b = job_;
      const std::function<void()> *body = body_;
      const uint32_t threads = static_cast<uint32_t>(b->threads);  // b may be gone once all are done
      threadIdx = ThreadIndex(index, b->dim);
      blockIdx = b->index;
      blockDim = b->dim;
      gridDim = b->grid;
      current_block = b;
      current_tid = index;
      try {
        (*body)();
      } catch (const Abort &) {
      } catch (const std::exception &e) {
        std::lock_guard<std::mutex> guard(b->mutex);
        FaultLocked(*b, std::string("cudasim: exception in a kernel thread: ") + e.what() + ". In " +
                            Where(*b, index));
      } catch (...) {
        std::lock_guard<std::mutex> guard(b->mutex);
        FaultLocked(*b, "cudasim: unknown exception in a kernel thread. In " + Where(*b, index));
      }
      Exit(*b, b->barrier, index, 0, "__syncthreads");
      Exit(*b, b->warps[index / 32], index % 32, index / 32 * 32, "a warp shuffle");
      current_block = nullptr;
      current_tid = -1;
      if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == threads) FutexWakeAll(done_);
    }
  }

  // Written by the launcher before the workers' `go` (release) and read after it (acquire).
  Block *job_ = nullptr;
  const std::function<void()> *body_ = nullptr;
  std::atomic<uint32_t> done_{0};
  std::vector<std::unique_ptr<Worker>> workers_;  // grown by the launcher only, between blocks
};

// Dynamic shared memory of exactly the launch's size. Plain builds surround it with canaries
// checked after each block; under AddressSanitizer it is an exact-size heap block, so ASan
// reports any access outside it.
class DynamicShared {
 public:
#if defined(__SANITIZE_ADDRESS__)
  static constexpr size_t kCanary = 0;
#else
  static constexpr size_t kCanary = 64;
#endif
  static constexpr unsigned char kCanaryByte = 0xc5;

  explicit DynamicShared(size_t size) : size_(size) {
    storage_ = static_cast<unsigned char *>(::operator new[](size + 2 * kCanary, std::align_val_t{16}));
  }
  ~DynamicShared() { ::operator delete[](storage_, std::align_val_t{16}); }
  DynamicShared(const DynamicShared &) = delete;
  DynamicShared &operator=(const DynamicShared &) = delete;

  void *base() const { return storage_ + kCanary; }

  void Reset() {
    std::memset(storage_, kCanaryByte, kCanary);
    std::memset(storage_ + kCanary, 0xff, size_);  // NaN in every float and double
    std::memset(storage_ + kCanary + size_, kCanaryByte, kCanary);
  }

  /// "" if the canaries are intact, else what was overwritten.
  std::string Check() const {
    for (size_t i = 0; i < kCanary; ++i) {
      if (storage_[kCanary + size_ + i] != kCanaryByte) {
        size_t last = i;
        for (size_t j = i; j < kCanary; ++j)
          if (storage_[kCanary + size_ + j] != kCanaryByte) last = j;
        std::ostringstream ss;
        ss << "written past its end: bytes " << size_ + i << ".." << size_ + last << " of a buffer of " << size_
           << " bytes";
        return ss.str();
      }
    }
    for (size_t i = 0; i < kCanary; ++i)
      if (storage_[i] != kCanaryByte) {
        std::ostringstream ss;
        ss << "written before its start: byte " << static_cast<long>(i) - static_cast<long>(kCanary);
        return ss.str();
      }
    return "";
  }

 private:
  size_t size_;
  unsigned char *storage_;
};

std::mutex &LaunchMutex() {
  static auto *m = new std::mutex;
  return *m;
}

std::string LaunchErrorText(const KernelInfo &k, const LaunchRequest &r, const std::string &why) {
  std::ostringstream ss;
  ss << "cudasim: launch of " << k.name << " at " << r.site.file << ":" << r.site.line << " (grid " << Dim(r.grid)
     << ", block " << Dim(r.block) << ", " << r.dynamic_shared << " B dynamic shared memory) fails: " << why;
  return ss.str();
}

// What a real launch would refuse, with the error code CUDA returns; cudaSuccess if none.
cudaError_t CheckLaunch(const KernelInfo &k, const LaunchRequest &r, std::string &why) {
  const DeviceProfile &d = Device();
  const uint64_t threads = uint64_t{r.block.x} * r.block.y * r.block.z;
  std::ostringstream ss;
  if (r.block.x == 0 || r.block.y == 0 || r.block.z == 0 || r.block.x > d.max_block[0] ||
      r.block.y > d.max_block[1] || r.block.z > d.max_block[2] || threads > d.max_threads) {
    ss << "block " << Dim(r.block) << " exceeds the device's limits (" << d.max_block[0] << ", " << d.max_block[1]
       << ", " << d.max_block[2] << "; " << d.max_threads << " threads)";
    why = ss.str();
    return cudaErrorInvalidConfiguration;
  }
  if (r.grid.x == 0 || r.grid.y == 0 || r.grid.z == 0 || r.grid.x > d.max_grid[0] || r.grid.y > d.max_grid[1] ||
      r.grid.z > d.max_grid[2]) {
    ss << "grid " << Dim(r.grid) << " exceeds the device's limits (" << d.max_grid[0] << ", " << d.max_grid[1]
       << ", " << d.max_grid[2] << ")";
    why = ss.str();
    return cudaErrorInvalidConfiguration;
  }
  if (k.launch_bounds && threads > k.launch_bounds) {
    ss << threads << " threads per block exceed the kernel's __launch_bounds__(" << k.launch_bounds << ")";
    why = ss.str();
    return cudaErrorLaunchOutOfResources;
  }
  if (k.static_shared + r.dynamic_shared > d.shared_optin) {
    ss << k.static_shared << " B static + " << r.dynamic_shared << " B dynamic shared memory exceed the device's "
       << d.shared_optin << " B per block";
    why = ss.str();
    return cudaErrorInvalidValue;
  }
  if (r.dynamic_shared > static_cast<size_t>(k.max_dynamic)) {
    ss << r.dynamic_shared << " B of dynamic shared memory exceed the kernel's limit of " << k.max_dynamic << " B";
    if (!k.max_dynamic_set)
      ss << " (" << d.shared_per_block << " B per block without opt-in, minus " << k.static_shared
         << " B static; raise it with cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, "
            "bytes))";
    why = ss.str();
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

}  // namespace

void Launch(const LaunchRequest &r) {
  std::lock_guard<std::mutex> launch_guard(LaunchMutex());  // one kernel at a time, process-wide
  KernelInfo &k = Discover(r.kernel);
  LaunchRecord record{k.name, std::string(r.site.file) + ":" + std::to_string(r.site.line), r.grid, r.block,
                      r.dynamic_shared, cudaSuccess};
  std::string why;
  cudaError_t status;
  {
    std::lock_guard<std::mutex> guard(Kernels().mutex);  // cudaFuncSetAttribute may run on another thread
    status = CheckLaunch(k, r, why);
  }
  if (status != cudaSuccess) {
    record.status = status;
    RecordLaunch(record);
    SetLastError(status, LaunchErrorText(k, r, why));
    return;
  }
  // Kernel arguments that are pointers must be device-accessible (a GPU faults otherwise).
  for (size_t i = 0; i < r.pointer_args.size(); ++i) {
    const void *p = r.pointer_args[i].second;
    if (p && !DeviceAccessible(p)) {
      std::ostringstream ss;
      ss << "cudasim: argument " << r.pointer_args[i].first << " (" << r.pointer_arg_types[i] << " = " << p
         << ") of " << k.name << " launched at " << r.site.file << ":" << r.site.line
         << " is host memory, not from cudaMalloc, cudaHostAlloc or cudaHostRegister: the GPU cannot read it";
      throw KernelFault(ss.str());
    }
  }
  RecordLaunch(record);
  {
    std::lock_guard<std::mutex> guard(Kernels().mutex);
    k.block_sizes.insert(static_cast<unsigned>(uint64_t{r.block.x} * r.block.y * r.block.z));
  }

  DynamicShared dynamic(r.dynamic_shared);
  for (unsigned z = 0; z < r.grid.z; ++z) {
    for (unsigned y = 0; y < r.grid.y; ++y) {
      for (unsigned x = 0; x < r.grid.x; ++x) {
        for (const StaticVar &v : k.vars) std::memset(v.address, 0xff, v.size);
        dynamic.Reset();
        Block b(k, r.site, uint3{x, y, z}, r.block, r.grid, dynamic.base(), r.dynamic_shared);
        WorkerPool::Get().Run(b, r.run_thread);
        if (b.aborted) throw KernelFault(b.fault);
        const std::string overrun = dynamic.Check();
        if (!overrun.empty())
          throw KernelFault("cudasim: dynamic shared memory " + overrun + " (the launch's size). In " +
                            Where(b, -1));
      }
    }
  }
}

Block::Block(const KernelInfo &k, const LaunchSite &s, uint3 idx, dim3 block_dim, dim3 grid_dim, void *dynamic,
             size_t dynamic_size)
    : kernel(&k),
      site(s),
      index(idx),
      dim(block_dim),
      grid(grid_dim),
      threads(static_cast<int>(block_dim.x * block_dim.y * block_dim.z)),
      dynamic_base(dynamic),
      dynamic_bytes(dynamic_size),
      shuffle(static_cast<size_t>(threads) * kShuffleBytesPerThread),
      barrier(threads) {
  for (int w = 0; w * 32 < threads; ++w) warps.emplace_back(std::min(32, threads - w * 32));
}

void SetFatal(std::function<void(const std::string &)> handler) { FatalHandler() = std::move(handler); }

void FutexWait(std::atomic<uint32_t> &word, uint32_t expected, double seconds) {
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  if (seconds <= 0) return;
  timespec t;
  t.tv_sec = static_cast<time_t>(seconds);
  t.tv_nsec = static_cast<long>((seconds - static_cast<double>(t.tv_sec)) * 1e9);
  syscall(SYS_futex, reinterpret_cast<uint32_t *>(&word), FUTEX_WAIT_PRIVATE, expected, &t, nullptr, 0);
}

void FutexWakeAll(std::atomic<uint32_t> &word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t *>(&word), FUTEX_WAKE_PRIVATE, INT32_MAX, nullptr, nullptr, 0);
}

}  // namespace detail

void syncthreads(const char *file, int line) {
  using namespace detail;
  Block &b = CurrentBlock("__syncthreads");
  Barrier(b, b.barrier, current_tid, 0, file, line, false, "__syncthreads");
}

void SetFatalHandler(std::function<void(const std::string &)> handler) { detail::SetFatal(std::move(handler)); }

std::vector<KernelRecord> Kernels() {
  auto &reg = detail::Kernels();
  std::lock_guard<std::mutex> guard(reg.mutex);
  std::vector<KernelRecord> out;
  for (const auto &[key, k] : reg.kernels)
    if (k.discovered)
      out.push_back(KernelRecord{k.name, k.static_shared, k.uses_dynamic, k.launch_bounds, k.max_dynamic});
  std::sort(out.begin(), out.end(), [](const KernelRecord &a, const KernelRecord &b) { return a.kernel < b.kernel; });
  return out;
}

}  // namespace cudasim
