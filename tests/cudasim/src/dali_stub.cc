// cudasim's DALI stand-in: the schema and operator registries.
#include <map>
#include <stdexcept>
#include <string>
#include <utility>

#include "dali/pipeline/operator/operator.h"

namespace dali {
namespace {

std::map<std::string, OpSchema *> &Schemas() {
  static auto *schemas = new std::map<std::string, OpSchema *>;
  return *schemas;
}

std::map<std::pair<std::string, std::string>, OperatorFactory> &Factories() {
  static auto *factories = new std::map<std::pair<std::string, std::string>, OperatorFactory>;
  return *factories;
}

}  // namespace

OpSchema &SchemaRegistry::Register(const std::string &name) {
  auto &s = Schemas()[name];
  if (s) throw std::logic_error("schema " + name + " registered twice");
  s = new OpSchema(name);
  return *s;
}

const OpSchema &SchemaRegistry::Get(const std::string &name) {
  auto it = Schemas().find(name);
  if (it == Schemas().end()) throw std::invalid_argument("no operator schema named " + name);
  return *it->second;
}

int OperatorRegistry::Register(const std::string &schema_name, const std::string &device, OperatorFactory factory) {
  Factories()[{schema_name, device}] = std::move(factory);
  return 0;
}

std::unique_ptr<OperatorBase> OperatorRegistry::Create(const std::string &schema_name, const std::string &device,
                                                       const OpSpec &spec) {
  auto it = Factories().find({schema_name, device});
  if (it == Factories().end()) throw std::invalid_argument("no " + device + " operator named " + schema_name);
  return it->second(spec);
}

}  // namespace dali
