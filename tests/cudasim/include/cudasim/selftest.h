// cudasim's self-test kernels (selftest/selftest_kernels.cu): small kernels with known bugs and
// known results that prove each of the simulator's checks works.
#pragma once

#include <string>
#include <vector>

namespace cudasim::selftest {

/// Runs the self-test `name`; returns its values, throws cudasim::KernelFault for a fault the
/// simulator found, or std::runtime_error for a CUDA error (message: the error's name).
std::vector<float> Run(const std::string &name, const std::vector<std::string> &args);

}  // namespace cudasim::selftest
