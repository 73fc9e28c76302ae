// Process-wide GPU residences of a bank, shared by every fn.relabel.lookup instance (every
// pipeline) in the process: a device copy per (bank, GPU), or one page-locked registration of
// the bank's host mapping. Each is created by the first operator that needs it and freed when
// the last holder (operator) is destroyed, so N pipelines on one GPU hold one copy, and a bank
// nobody uses any more does not pin GPU memory.
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "lookup/bank.h"
#include "lookup/lookup.h"

namespace dali_relabel {

/// The bank's arrays in device memory of `device` (the current device), copied on `stream`
/// by the first caller (which waits for the copy); later callers share it. Thread-safe.
std::shared_ptr<const GpuBankView> AcquireDeviceCopy(const std::shared_ptr<const Bank> &bank, int device,
                                                     cudaStream_t stream);

/// Device pointers, valid on `device` (the current device), to the bank's host memory,
/// registered (page-locked, mapped, portable) once per process. Thread-safe.
std::shared_ptr<const GpuBankView> AcquireHostMapped(const std::shared_ptr<const Bank> &bank, int device);

}  // namespace dali_relabel
