// cudasim: kernel execution (thread pool, checked barriers, shared memory) and launch checks.
#include "cudasim/sim.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
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

void KernelEntry(unsigned int launch_bounds, const char *pretty_function) {
  if (!discovering) return;
  discovery_target->name = ShortName(pretty_function);
  discovery_target->launch_bounds = launch_bounds;
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
  // ptxas's layout: declaration order, natural alignment; with dynamic shared memory the
  // static part is padded to 16 bytes (where the dynamic buffer starts).
  size_t offset = 0;
  for (const StaticVar &v : k.vars) offset = (offset + v.align - 1) / v.align * v.align + v.size;
  if (k.uses_dynamic) offset = (offset + 15) / 16 * 16;
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

// Records the first fault of the block and wakes every waiting thread (they unwind).
void FaultLocked(Block &b, const std::string &what) {
  if (!b.aborted) {
    b.aborted = true;
    b.fault = what;
  }
  b.cv.notify_all();
}

std::string ArrivalSummary(const std::vector<Arrival> &arrivals, const dim3 &dim) {
  std::map<std::string, std::pair<int, int>> by_site;  // site -> (count, first tid)
  for (const Arrival &a : arrivals) {
    auto &e = by_site[a.site];
    if (e.first++ == 0) e.second = a.tid;
  }
  std::ostringstream ss;
  bool first = true;
  for (const auto &[site, e] : by_site) {
    ss << (first ? "" : "; ") << e.first << " thread" << (e.first == 1 ? "" : "s") << " at " << site
       << " (first: thread " << Dim(ThreadIndex(e.second, dim)) << ")";
    first = false;
  }
  return ss.str();
}

std::chrono::steady_clock::duration DeadlockTimeout() {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(Device().deadlock_seconds));
}

// A barrier among `members` threads (the block, or one warp): all must arrive, from the same
// source line, and none may have returned. Called with the block's lock held.
void BarrierLocked(std::unique_lock<std::mutex> &lock, Block &b, BarrierState &s, const std::string &site,
                   const char *what) {
  const int tid = current_tid;
  if (b.aborted) throw Abort{};
  if (s.exited > 0) {
    std::ostringstream ss;
    ss << "cudasim: " << what << " at " << site << " reached after " << s.exited << " of " << s.members
       << " threads had returned from the kernel (first: thread " << Dim(ThreadIndex(s.first_exited, b.dim))
       << "); every thread must reach every barrier. In " << Where(b, tid);
    FaultLocked(b, ss.str());
    throw Abort{};
  }
  s.arrivals.push_back(Arrival{site, tid});
  if (++s.arrived == s.members) {
    const bool divergent = std::any_of(s.arrivals.begin(), s.arrivals.end(),
                                       [&](const Arrival &a) { return a.site != s.arrivals.front().site; });
    if (divergent) {
      std::ostringstream ss;
      ss << "cudasim: divergent " << what << ": the threads of one block wait at different barriers: "
         << ArrivalSummary(s.arrivals, b.dim) << ". In " << Where(b, -1);
      FaultLocked(b, ss.str());
    }
    s.arrived = 0;
    s.arrivals.clear();
    ++s.phase;
    b.cv.notify_all();
    if (b.aborted) throw Abort{};
    return;
  }
  const uint64_t phase = s.phase;
  const auto deadline = std::chrono::steady_clock::now() + DeadlockTimeout();
  while (s.phase == phase && !b.aborted) {
    if (b.cv.wait_until(lock, deadline) == std::cv_status::timeout && s.phase == phase && !b.aborted) {
      std::ostringstream ss;
      ss << "cudasim: deadlock: " << s.arrived << " of " << s.members << " threads waited "
         << Device().deadlock_seconds << " s at " << what << " (" << ArrivalSummary(s.arrivals, b.dim)
         << "); the other " << s.members - s.arrived
         << " neither arrived nor returned (an endless loop, or waiting for the waiting threads). In "
         << Where(b, -1);
      FaultLocked(b, ss.str());
    }
  }
  if (b.aborted) throw Abort{};
}

void ExitLocked(Block &b, BarrierState &s, int tid, const char *what) {
  ++s.exited;
  if (s.exited == 1) s.first_exited = tid;
  if (s.arrived > 0 && !b.aborted) {
    std::ostringstream ss;
    ss << "cudasim: thread " << Dim(ThreadIndex(tid, b.dim)) << " returned from the kernel while " << s.arrived
       << " thread" << (s.arrived == 1 ? "" : "s") << " wait at " << what << " ("
       << ArrivalSummary(s.arrivals, b.dim) << "); every thread must reach every barrier. In " << Where(b, -1);
    FaultLocked(b, ss.str());
  }
}

Block &CurrentBlock(const char *what) {
  if (!current_block) throw KernelFault(std::string("cudasim: ") + what + " called outside a kernel");
  return *current_block;
}

std::string Site(const char *file, int line) { return std::string(file) + ":" + std::to_string(line); }

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
  std::unique_lock<std::mutex> lock(b.mutex);
  std::ostringstream ss;
  ss << "cudasim: " << what << " for " << expected_threads << " threads used at " << where.file_name() << ":"
     << where.line() << " in a block of " << b.threads << " threads " << Dim(b.dim)
     << " (cub's result is undefined then). In " << Where(b, current_tid);
  FaultLocked(b, ss.str());
  throw Abort{};
}

void CubBarrier(const std::source_location &where) {
  Block &b = CurrentBlock("cub::BlockReduce");
  std::unique_lock<std::mutex> lock(b.mutex);
  BarrierLocked(lock, b, b.barrier, Site(where.file_name(), where.line()) + " (inside cub::BlockReduce)",
                "__syncthreads");
}

void CubWarpSync(const std::source_location &where) {
  Block &b = CurrentBlock("cub::BlockReduce");
  std::unique_lock<std::mutex> lock(b.mutex);
  BarrierLocked(lock, b, b.warps[current_tid / 32], Site(where.file_name(), where.line()) + " (inside cub::BlockReduce)",
                "a warp shuffle");
}

// --- the worker pool: one OS thread per CUDA thread of a block, reused ----------------------------

namespace {

class WorkerPool {
 public:
  static WorkerPool &Get() {
    static auto *pool = new WorkerPool;  // leaked: workers block on its members until exit
    return *pool;
  }

  /// Runs `b.threads` CUDA threads of block `b` concurrently; returns when all have returned.
  void Run(Block &b, const std::function<void()> &body) {
    Grow(b.threads);
    {
      std::lock_guard<std::mutex> guard(mutex_);
      job_ = &b;
      body_ = &body;
      done_ = 0;
      ++generation_;
    }
    start_.notify_all();
    std::unique_lock<std::mutex> lock(mutex_);
    auto last_progress = std::chrono::steady_clock::now();
    int last_done = 0;
    while (done_ < b.threads) {
      done_cv_.wait_for(lock, std::chrono::milliseconds(200));
      const auto now = std::chrono::steady_clock::now();
      if (done_ != last_done) {
        last_done = done_;
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
        ss << (aborted ? fault + "\n" : std::string()) << "cudasim: " << b.threads - done_ << " of " << b.threads
           << " threads did not return within " << grace << " s"
           << (aborted ? " after the fault (stuck outside any barrier)" : " (an endless loop?)") << ". In "
           << Where(b, -1) << ". Exiting: the stuck OS threads cannot be stopped.";
        Fatal(ss.str());
      }
    }
    job_ = nullptr;
    body_ = nullptr;
  }

 private:
  void Grow(int n) {
    while (static_cast<int>(workers_) < n) {
      const int index = static_cast<int>(workers_++);
      std::thread([this, index] { Work(index); }).detach();
    }
  }

  void Work(int index) {
    uint64_t seen = 0;
    for (;;) {
      Block *b;
      const std::function<void()> *body;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        start_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        b = job_;
        body = body_;
      }
      if (!b || index >= b->threads) continue;
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
      {
        std::lock_guard<std::mutex> guard(b->mutex);
        ExitLocked(*b, b->barrier, index, "__syncthreads");
        ExitLocked(*b, b->warps[index / 32], index, "a warp shuffle");
        b->cv.notify_all();
      }
      current_block = nullptr;
      current_tid = -1;
      {
        std::lock_guard<std::mutex> guard(mutex_);
        if (++done_ == b->threads) done_cv_.notify_all();
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable start_, done_cv_;
  uint64_t generation_ = 0;
  Block *job_ = nullptr;
  const std::function<void()> *body_ = nullptr;
  int done_ = 0;
  size_t workers_ = 0;
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
  const cudaError_t status = CheckLaunch(k, r, why);
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
      shuffle(static_cast<size_t>(threads) * kShuffleBytesPerThread) {
  barrier.members = threads;
  for (int w = 0; w * 32 < threads; ++w) {
    BarrierState s;
    s.members = std::min(32, threads - w * 32);
    warps.push_back(s);
  }
}

void SetFatal(std::function<void(const std::string &)> handler) { FatalHandler() = std::move(handler); }

}  // namespace detail

void syncthreads(const char *file, int line) {
  using namespace detail;
  Block &b = CurrentBlock("__syncthreads");
  std::unique_lock<std::mutex> lock(b.mutex);
  BarrierLocked(lock, b, b.barrier, Site(file, line), "__syncthreads");
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
