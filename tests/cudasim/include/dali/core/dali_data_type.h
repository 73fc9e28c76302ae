// cudasim's stand-in for DALI's dali/core/dali_data_type.h: the type ids and their names, as
// DALI 2.x defines them (the operators print these names in their errors).
#pragma once

typedef enum _DALIDataType {
  DALI_NO_TYPE = -1,
  DALI_UINT8 = 0,
  DALI_UINT16 = 1,
  DALI_UINT32 = 2,
  DALI_UINT64 = 3,
  DALI_INT8 = 4,
  DALI_INT16 = 5,
  DALI_INT32 = 6,
  DALI_INT64 = 7,
  DALI_FLOAT16 = 8,
  DALI_FLOAT = 9,
  DALI_FLOAT64 = 10,
  DALI_BOOL = 11,
  DALI_STRING = 12,
} daliDataType_t;

inline const char *daliDataTypeName(daliDataType_t t) {
  switch (t) {
    case DALI_NO_TYPE: return "<no_type>";
    case DALI_UINT8: return "uint8";
    case DALI_UINT16: return "uint16";
    case DALI_UINT32: return "uint32";
    case DALI_UINT64: return "uint64";
    case DALI_INT8: return "int8";
    case DALI_INT16: return "int16";
    case DALI_INT32: return "int32";
    case DALI_INT64: return "int64";
    case DALI_FLOAT16: return "float16";
    case DALI_FLOAT: return "float";
    case DALI_FLOAT64: return "double";
    case DALI_BOOL: return "bool";
    case DALI_STRING: return "string";
  }
  return nullptr;
}

namespace dali {
using DALIDataType = daliDataType_t;
}  // namespace dali
