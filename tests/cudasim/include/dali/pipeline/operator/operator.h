// cudasim's stand-in for dali/pipeline/operator/operator.h: just enough of DALI's operator API
// for the project's operators (label_pool, lookup) to compile unmodified and run in a test
// driver: the operator base, schema and operator registration, workspace, tensor lists.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "dali/core/dali_data_type.h"
#include "dali/core/tensor_shape.h"
#include "dali/pipeline/data/backend.h"
#include "dali/pipeline/data/tensor_list.h"
#include "dali/pipeline/data/types.h"
#include "dali/pipeline/operator/op_spec.h"
#include "dali/pipeline/util/thread_pool.h"
#include "dali/pipeline/workspace/workspace.h"

namespace dali {

struct OutputDesc {
  TensorListShape<> shape;
  DALIDataType type = DALI_NO_TYPE;
};

class OperatorBase {
 public:
  explicit OperatorBase(const OpSpec &spec) : spec_(spec) {}
  virtual ~OperatorBase() = default;
  virtual bool Setup(std::vector<OutputDesc> &output_desc, const Workspace &ws) = 0;
  virtual void Run(Workspace &ws) = 0;
  const OpSpec &GetSpec() const { return spec_; }

 protected:
  const OpSpec spec_;
};

template <typename Backend>
class Operator : public OperatorBase {
 public:
  using OperatorBase::OperatorBase;
  bool Setup(std::vector<OutputDesc> &output_desc, const Workspace &ws) final { return SetupImpl(output_desc, ws); }
  void Run(Workspace &ws) final { RunImpl(ws); }

 protected:
  virtual bool SetupImpl(std::vector<OutputDesc> &output_desc, const Workspace &ws) = 0;
  virtual void RunImpl(Workspace &ws) = 0;
};

using OperatorFactory = std::function<std::unique_ptr<OperatorBase>(const OpSpec &)>;

struct OperatorRegistry {
  /// Registers the factory of `schema_name` on `device` ("cpu" or "gpu").
  static int Register(const std::string &schema_name, const std::string &device, OperatorFactory factory);
  /// Creates an operator; throws if none is registered for the name and device.
  static std::unique_ptr<OperatorBase> Create(const std::string &schema_name, const std::string &device,
                                              const OpSpec &spec);
};

template <typename Backend>
constexpr const char *BackendDeviceName() {
  return std::is_same_v<Backend, GPUBackend> ? "gpu" : "cpu";
}

}  // namespace dali

#define CUDASIM_DALI_CAT_(a, b) a##b
#define CUDASIM_DALI_CAT(a, b) CUDASIM_DALI_CAT_(a, b)

#define DALI_SCHEMA(OpName) \
  static ::dali::OpSchema &CUDASIM_DALI_CAT(cudasim_schema_, OpName) = ::dali::SchemaRegistry::Register(#OpName)

// `device` is ::dali::CPU or ::dali::GPU, pasted into ::dali::CPUBackend as DALI does.
#define DALI_REGISTER_OPERATOR(OpName, OpType, device)                                                      \
  static int CUDASIM_DALI_CAT(cudasim_operator_, __LINE__) = ::dali::OperatorRegistry::Register(            \
      #OpName, ::dali::BackendDeviceName<device##Backend>(),                                                \
      [](const ::dali::OpSpec &spec) -> std::unique_ptr<::dali::OperatorBase> {                            \
        return std::make_unique<OpType>(spec);                                                              \
      });
