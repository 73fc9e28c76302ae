// cudasim: the driver API header exists only because some headers include it.
#pragma once
#include "cuda_runtime.h"
