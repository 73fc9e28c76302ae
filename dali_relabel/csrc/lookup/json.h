// A small strict JSON reader for bank.json (RFC 8259; no extensions). DALI's headers ship no
// JSON library and bank.json is tiny, so a recursive-descent parser is all we need.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace dali_relabel {

struct JsonError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct JsonValue {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  bool boolean = false;
  double number = 0;
  bool is_integer = false;  // written without fraction or exponent and fits int64
  int64_t integer = 0;
  std::string string;  // a string value; for a number, its text as written
  std::vector<JsonValue> array;
  std::vector<std::pair<std::string, JsonValue>> object;  // in file order

  bool IsInteger() const { return kind == kNumber && is_integer; }
  /// The member `key` of an object (the last one if repeated), or nullptr.
  const JsonValue *Find(const std::string &key) const;
  /// A short description for error messages, e.g. `"abc"`, `1.5`, `an object`.
  std::string Describe() const;
};

/// Parses a whole JSON text; throws JsonError with the byte offset of the first problem.
JsonValue ParseJson(const std::string &text);

}  // namespace dali_relabel
