// cudasim's stand-in for dali/pipeline/data/types.h: the type <-> id mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "dali/core/dali_data_type.h"
#include "dali/core/float16.h"

namespace dali {

template <typename T>
struct type2id;

#define CUDASIM_TYPE_ID(type_, id_) \
  template <>                       \
  struct type2id<type_> : std::integral_constant<DALIDataType, id_> {};
CUDASIM_TYPE_ID(uint8_t, DALI_UINT8)
CUDASIM_TYPE_ID(uint16_t, DALI_UINT16)
CUDASIM_TYPE_ID(uint32_t, DALI_UINT32)
CUDASIM_TYPE_ID(uint64_t, DALI_UINT64)
CUDASIM_TYPE_ID(int8_t, DALI_INT8)
CUDASIM_TYPE_ID(int16_t, DALI_INT16)
CUDASIM_TYPE_ID(int32_t, DALI_INT32)
CUDASIM_TYPE_ID(int64_t, DALI_INT64)
CUDASIM_TYPE_ID(float16, DALI_FLOAT16)
CUDASIM_TYPE_ID(float, DALI_FLOAT)
CUDASIM_TYPE_ID(double, DALI_FLOAT64)
CUDASIM_TYPE_ID(bool, DALI_BOOL)
#undef CUDASIM_TYPE_ID

inline size_t TypeSize(DALIDataType t) {
  switch (t) {
    case DALI_UINT8: case DALI_INT8: case DALI_BOOL: return 1;
    case DALI_UINT16: case DALI_INT16: case DALI_FLOAT16: return 2;
    case DALI_UINT32: case DALI_INT32: case DALI_FLOAT: return 4;
    case DALI_UINT64: case DALI_INT64: case DALI_FLOAT64: return 8;
    default: return 0;
  }
}

}  // namespace dali
