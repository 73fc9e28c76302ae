// cudasim's cub::BlockReduce: a stand-in with the real one's interface, TempStorage layout and
// contract (the result is defined in thread 0 only), built on the simulator's barrier.
//
// Real cub cannot run on a CPU (its warp reductions are inline PTX). This one reduces in the
// same two stages as cub's default algorithm (BLOCK_REDUCE_WARP_REDUCTIONS): each warp's lane 0
// combines its 32 values (the warp shuffles are modelled by a per-block scratch area outside
// TempStorage, synchronized among the warp's threads only), writes the warp aggregate into
// TempStorage.warp_aggregates, and after one block-wide barrier thread 0 combines the
// aggregates. So, as with cub, two reductions on one TempStorage race unless a barrier
// separates them. Threads other than 0 get NaN (or all-ones bytes)
// so that code that forgets to broadcast the result fails. Used in a block whose size differs
// from BLOCK_DIM_X * BLOCK_DIM_Y * BLOCK_DIM_Z it reports a KernelFault naming the call.
#pragma once

#include <cstring>
#include <limits>
#include <source_location>
#include <type_traits>

#include "cuda_runtime.h"

namespace cuda {
template <typename T = void>
struct maximum {
  T operator()(const T &a, const T &b) const { return a < b ? b : a; }
};
template <>
struct maximum<void> {
  template <typename A, typename B>
  auto operator()(const A &a, const B &b) const {
    return a < b ? b : a;
  }
};
template <typename T = void>
struct minimum {
  T operator()(const T &a, const T &b) const { return b < a ? b : a; }
};
template <>
struct minimum<void> {
  template <typename A, typename B>
  auto operator()(const A &a, const B &b) const {
    return b < a ? b : a;
  }
};
}  // namespace cuda

namespace cudasim::detail {
// The block's shuffle scratch: room for one value per thread (stands in for warp registers).
void *BlockShuffleScratch(size_t bytes_per_thread);
// Checks the block size against the template's and fails with a KernelFault naming `where`.
void CheckCubBlockSize(const char *what, int expected_threads, const std::source_location &where);
// A barrier recorded at the caller's line (the reduction's internal __syncthreads).
void CubBarrier(const std::source_location &where);
// The warp shuffles' synchronization: every lane of the caller's warp arrives; lane 0 waits
// until all have (it then reads their values), the others go on.
void CubWarpGather(const std::source_location &where);
}  // namespace cudasim::detail

namespace cub {

struct NullType {};

enum BlockReduceAlgorithm {
  BLOCK_REDUCE_RAKING_COMMUTATIVE_ONLY,
  BLOCK_REDUCE_RAKING,
  BLOCK_REDUCE_WARP_REDUCTIONS,
};

struct Sum {
  template <typename A, typename B>
  auto operator()(const A &a, const B &b) const {
    return a + b;
  }
};

template <typename T, int BLOCK_DIM_X, BlockReduceAlgorithm ALGORITHM = BLOCK_REDUCE_WARP_REDUCTIONS,
          int BLOCK_DIM_Y = 1, int BLOCK_DIM_Z = 1, int LEGACY_PTX_ARCH = 0>
class BlockReduce {
  static_assert(ALGORITHM == BLOCK_REDUCE_WARP_REDUCTIONS,
                "cudasim models cub::BlockReduce's default algorithm only (BLOCK_REDUCE_WARP_REDUCTIONS)");
  static constexpr int kThreads = BLOCK_DIM_X * BLOCK_DIM_Y * BLOCK_DIM_Z;
  static constexpr int kWarps = (kThreads + 31) / 32;

  // cub's layout for this algorithm: the warp reductions' storage (shuffle-based, so empty
  // NullType slots), one aggregate per warp, the block prefix. The same size as cub's, so that
  // a kernel's static shared memory is the same as under nvcc.
  struct Layout {
    NullType warp_reduce[kWarps];
    T warp_aggregates[kWarps];
    T block_prefix;
  };

 public:
  struct TempStorage {
    alignas(Layout) unsigned char bytes[sizeof(Layout)];
  };

  explicit BlockReduce(TempStorage &storage, std::source_location where = std::source_location::current())
      : storage_(reinterpret_cast<Layout &>(storage)), where_(where) {
    ::cudasim::detail::CheckCubBlockSize("cub::BlockReduce", kThreads, where_);
  }

  template <typename Op>
  T Reduce(T input, Op op) {
    return ReduceImpl(input, op, kThreads);
  }
  template <typename Op>
  T Reduce(T input, Op op, int num_valid) {
    return ReduceImpl(input, op, num_valid);
  }
  T Sum(T input) { return ReduceImpl(input, cub::Sum(), kThreads); }
  T Sum(T input, int num_valid) { return ReduceImpl(input, cub::Sum(), num_valid); }

 private:
  static int LinearTid() {
    return static_cast<int>(threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y);
  }

  static T Poison() {
    if constexpr (std::is_floating_point_v<T>) {
      return std::numeric_limits<T>::quiet_NaN();
    } else {
      T t;
      std::memset(static_cast<void *>(&t), 0xff, sizeof(T));
      return t;
    }
  }

  template <typename Op>
  T ReduceImpl(T input, Op op, int num_valid) {
    const int tid = LinearTid();
    // Stage 1, the "warp shuffles": every thread publishes its value; lane 0 of each warp
    // combines its warp's valid values into the warp's aggregate in TempStorage.
    T *lanes = static_cast<T *>(::cudasim::detail::BlockShuffleScratch(sizeof(T)));
    lanes[tid] = input;
    ::cudasim::detail::CubWarpGather(where_);
    if (tid % 32 == 0 && tid < num_valid) {
      T acc = lanes[tid];
      for (int lane = 1; lane < 32 && tid + lane < num_valid && tid + lane < kThreads; ++lane)
        acc = op(acc, lanes[tid + lane]);
      storage_.warp_aggregates[tid / 32] = acc;
    }
    // Stage 2, as in cub: one barrier, then thread 0 combines the warp aggregates. (Lane 0 has
    // read the lanes before it reaches this barrier, so the next reduction may overwrite them.)
    ::cudasim::detail::CubBarrier(where_);
    if (tid != 0) return Poison();
    T acc = storage_.warp_aggregates[0];
    for (int w = 1; w < kWarps && w * 32 < num_valid; ++w) acc = op(acc, storage_.warp_aggregates[w]);
    return acc;
  }

  Layout &storage_;
  std::source_location where_;
};

}  // namespace cub
