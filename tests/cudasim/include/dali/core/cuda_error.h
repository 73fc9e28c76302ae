// cudasim's stand-in for dali/core/cuda_error.h: CUDA_CALL throws dali::CUDAError with DALI's
// message, followed by the simulator's explanation of the failure when it has one.
#pragma once

#include <cuda_runtime.h>

#include <new>
#include <sstream>
#include <stdexcept>
#include <string>

#include "cudasim/sim.h"

namespace dali {

class CUDAError : public std::runtime_error {
 public:
  explicit CUDAError(cudaError_t status) : std::runtime_error(Message(status)), status_(status) {}
  cudaError_t rt_error() const noexcept { return status_; }

 private:
  static std::string Message(cudaError_t status) {
    std::ostringstream ss;
    ss << "CUDA runtime API error " << cudaGetErrorName(status) << " (" << static_cast<unsigned>(status)
       << "):\n" << cudaGetErrorString(status);
    const std::string detail = ::cudasim::LastErrorDetail(status);
    if (!detail.empty()) ss << "\n" << detail;
    return ss.str();
  }
  cudaError_t status_;
};

class CUDABadAlloc : public std::bad_alloc {
 public:
  const char *what() const noexcept override { return "CUDA allocation failed"; }
};

inline void cudaResultCheck(cudaError_t status) {
  switch (status) {
    case cudaSuccess:
      return;
    case cudaErrorMemoryAllocation:
      cudaGetLastError();
      throw CUDABadAlloc();
    default:
      cudaGetLastError();
      throw CUDAError(status);
  }
}

}  // namespace dali

inline void CUDA_CALL(cudaError_t status) { ::dali::cudaResultCheck(status); }
