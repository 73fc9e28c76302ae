// cudasim's stand-in for DALI's backend tags.
#pragma once

namespace dali {
struct CPUBackend {};
struct GPUBackend {};
}  // namespace dali
