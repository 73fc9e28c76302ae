// cudasim's stand-ins for DALI's OpSchema (argument names, defaults, documentation) and OpSpec
// (the arguments of one operator instance). Defaults come from the real DALI_SCHEMA of the
// operator, so a spec holds only what a test passes, as a Python call would.
#pragma once

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "dali/pipeline/data/types.h"

namespace dali {

/// An argument value as given in Python: a number, a bool, a string or a list of numbers.
struct ArgumentValue {
  enum Kind { kInt, kFloat, kBool, kString, kList } kind = kInt;
  std::vector<double> numbers;
  std::string text;
};

class OpSchema {
 public:
  explicit OpSchema(std::string name) : name_(std::move(name)) {}
  const std::string &name() const { return name_; }

  OpSchema &DocStr(const std::string &) { return *this; }
  OpSchema &NumInput(int n) {
    num_input_ = n;
    return *this;
  }
  OpSchema &NumOutput(int n) {
    num_output_ = n;
    return *this;
  }
  OpSchema &InputDox(int, const std::string &, const std::string &, const std::string &) { return *this; }

  OpSchema &AddArg(const std::string &name, const std::string &, DALIDataType, bool tensor = false) {
    args_[name] = Arg{true, nullptr, tensor};
    return *this;
  }
  template <typename T>
  OpSchema &AddOptionalArg(const std::string &name, const std::string &, T default_value, bool tensor = false) {
    args_[name] = Arg{false, std::make_shared<ArgumentValue>(ToValue(default_value)), tensor};
    return *this;
  }
  template <typename T>
  OpSchema &AddOptionalArg(const std::string &name, const std::string &, std::nullptr_t, bool tensor = false) {
    args_[name] = Arg{false, nullptr, tensor};
    return *this;
  }

  /// An old argument name still accepted (DALI warns and renames it).
  OpSchema &DeprecateArgInFavorOf(const std::string &old_name, const std::string &new_name, const std::string &) {
    renamed_[old_name] = new_name;
    return *this;
  }
  const std::string &Renamed(const std::string &name) const {
    auto it = renamed_.find(name);
    return it == renamed_.end() ? name : it->second;
  }

  bool HasArgument(const std::string &name) const { return args_.count(name) > 0; }
  bool IsRequired(const std::string &name) const { return args_.at(name).required; }
  bool IsTensorArgument(const std::string &name) const { return args_.at(name).tensor; }
  const ArgumentValue *Default(const std::string &name) const { return args_.at(name).default_value.get(); }
  int num_input() const { return num_input_; }
  int num_output() const { return num_output_; }

 private:
  struct Arg {
    bool required;
    std::shared_ptr<ArgumentValue> default_value;
    bool tensor;
  };
  template <typename T>
  static ArgumentValue ToValue(const T &v) {
    ArgumentValue a;
    if constexpr (std::is_same_v<T, bool>) {
      a.kind = ArgumentValue::kBool;
      a.numbers = {v ? 1.0 : 0.0};
    } else if constexpr (std::is_integral_v<T>) {
      a.kind = ArgumentValue::kInt;
      a.numbers = {static_cast<double>(v)};
    } else if constexpr (std::is_floating_point_v<T>) {
      a.kind = ArgumentValue::kFloat;
      a.numbers = {static_cast<double>(v)};
    } else {
      a.kind = ArgumentValue::kString;
      a.text = std::string(v);
    }
    return a;
  }

  std::string name_;
  int num_input_ = 0, num_output_ = 0;
  std::map<std::string, Arg> args_;
  std::map<std::string, std::string> renamed_;
};

class SchemaRegistry {
 public:
  static OpSchema &Register(const std::string &name);
  static const OpSchema &Get(const std::string &name);
};

class OpSpec {
 public:
  explicit OpSpec(const std::string &schema_name) : schema_(&SchemaRegistry::Get(schema_name)) {}

  const OpSchema &GetSchema() const { return *schema_; }

  /// Sets a constant argument (checked against the schema like DALI does when building).
  OpSpec &SetArg(const std::string &given, ArgumentValue value) {
    const std::string &name = schema_->Renamed(given);
    Known(name);
    args_[name] = std::move(value);
    return *this;
  }
  /// Declares `name` a per-sample argument input (fed through the workspace).
  OpSpec &SetArgumentInput(const std::string &given) {
    const std::string &name = schema_->Renamed(given);
    Known(name);
    if (!schema_->IsTensorArgument(name))
      throw std::invalid_argument("Argument '" + name + "' of " + schema_->name() + " is not a tensor argument");
    tensor_args_[name] = true;
    return *this;
  }

  bool HasArgument(const std::string &name) const { return args_.count(name) > 0; }
  bool HasTensorArgument(const std::string &name) const { return tensor_args_.count(name) > 0; }

  template <typename T>
  T GetArgument(const std::string &name) const {
    const ArgumentValue &v = Value(name);
    if constexpr (std::is_same_v<T, std::string>) {
      if (v.kind != ArgumentValue::kString) throw std::invalid_argument("Argument '" + name + "' is not a string");
      return v.text;
    } else if constexpr (std::is_same_v<T, std::vector<float>>) {
      if (v.kind == ArgumentValue::kString) throw std::invalid_argument("Argument '" + name + "' is not numeric");
      return std::vector<float>(v.numbers.begin(), v.numbers.end());
    } else {
      if (v.kind == ArgumentValue::kString || v.numbers.size() != 1)
        throw std::invalid_argument("Argument '" + name + "' is not a scalar");
      if (std::is_integral_v<T> && !std::is_same_v<T, bool> && v.kind == ArgumentValue::kFloat)
        throw std::invalid_argument("Argument '" + name + "' must be an integer");
      return static_cast<T>(v.numbers[0]);
    }
  }

 private:
  void Known(const std::string &name) const {
    if (!schema_->HasArgument(name))
      throw std::invalid_argument("Got an unexpected argument '" + name + "' for " + schema_->name());
  }
  const ArgumentValue &Value(const std::string &name) const {
    Known(name);
    if (auto it = args_.find(name); it != args_.end()) return it->second;
    if (HasTensorArgument(name))
      throw std::invalid_argument("Argument '" + name + "' is a tensor input; read it from the workspace");
    if (const ArgumentValue *d = schema_->Default(name)) return *d;
    throw std::invalid_argument("Argument '" + name + "' is required by " + schema_->name() + " and was not given");
  }

  const OpSchema *schema_;
  std::map<std::string, ArgumentValue> args_;
  std::map<std::string, bool> tensor_args_;
};

}  // namespace dali
