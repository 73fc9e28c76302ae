// Strict recursive-descent JSON parser (see json.h).
#include "lookup/json.h"

#include <cerrno>
#include <cstdlib>
#include <cctype>
#include <sstream>

namespace dali_relabel {
namespace {

constexpr int kMaxDepth = 64;

class Parser {
 public:
  explicit Parser(const std::string &text) : s_(text) {}

  JsonValue Document() {
    JsonValue v = Value(0);
    Space();
    if (i_ != s_.size()) Error("unexpected data after the value");
    return v;
  }

 private:
  [[noreturn]] void Error(const std::string &what) {
    std::ostringstream ss;
    ss << what << " at byte " << i_;
    throw JsonError(ss.str());
  }
  void Space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool Literal(const char *word) {
    const std::string w(word);
    if (s_.compare(i_, w.size(), w) != 0) return false;
    i_ += w.size();
    return true;
  }

  JsonValue Value(int depth) {
    if (depth > kMaxDepth) Error("nesting too deep");
    Space();
    if (i_ >= s_.size()) Error("unexpected end of text");
    JsonValue v;
    const char c = s_[i_];
    if (c == '{') {
      v.kind = JsonValue::kObject;
      ++i_;
      Space();
      if (i_ < s_.size() && s_[i_] == '}') {
        ++i_;
        return v;
      }
      while (true) {
        Space();
        if (i_ >= s_.size() || s_[i_] != '"') Error("expected a string key");
        std::string key = String();
        Space();
        if (i_ >= s_.size() || s_[i_] != ':') Error("expected ':'");
        ++i_;
        v.object.emplace_back(std::move(key), Value(depth + 1));
        Space();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == '}') {
          ++i_;
          return v;
        }
        Error("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v.kind = JsonValue::kArray;
      ++i_;
      Space();
      if (i_ < s_.size() && s_[i_] == ']') {
        ++i_;
        return v;
      }
      while (true) {
        v.array.push_back(Value(depth + 1));
        Space();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == ']') {
          ++i_;
          return v;
        }
        Error("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v.kind = JsonValue::kString;
      v.string = String();
      return v;
    }
    if (Literal("true")) {
      v.kind = JsonValue::kBool;
      v.boolean = true;
      return v;
    }
    if (Literal("false")) {
      v.kind = JsonValue::kBool;
      return v;
    }
    if (Literal("null")) return v;
    if (c == '-' || (c >= '0' && c <= '9')) return Number();
    Error("unexpected character");
  }

  JsonValue Number() {
    const size_t start = i_;
    bool integral = true;
    if (s_[i_] == '-') ++i_;
    if (i_ < s_.size() && s_[i_] == '0') {
      ++i_;
    } else if (i_ < s_.size() && s_[i_] >= '1' && s_[i_] <= '9') {
      while (i_ < s_.size() && isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    } else {
      Error("malformed number");
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      integral = false;
      ++i_;
      if (i_ >= s_.size() || !isdigit(static_cast<unsigned char>(s_[i_]))) Error("malformed number");
      while (i_ < s_.size() && isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      integral = false;
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (i_ >= s_.size() || !isdigit(static_cast<unsigned char>(s_[i_]))) Error("malformed number");
      while (i_ < s_.size() && isdigit(static_cast<unsigned char>(s_[i_]))) ++i_;
    }
    const std::string text = s_.substr(start, i_ - start);
    JsonValue v;
    v.kind = JsonValue::kNumber;
    v.number = std::strtod(text.c_str(), nullptr);
    v.string = text;  // as written, for error messages (1.0 is not an integer)
    if (integral) {
      errno = 0;
      const long long n = std::strtoll(text.c_str(), nullptr, 10);
      if (errno != ERANGE) {
        v.is_integer = true;
        v.integer = n;
      }
    }
    return v;
  }

  static void AppendUtf8(std::string &out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  unsigned Hex4() {
    if (i_ + 4 > s_.size()) Error("truncated \\u escape");
    unsigned v = 0;
    for (int j = 0; j < 4; ++j) {
      const char h = s_[i_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= h - '0';
      else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
      else Error("bad \\u escape");
    }
    return v;
  }

  std::string String() {
    ++i_;  // opening quote
    std::string out;
    while (true) {
      if (i_ >= s_.size()) Error("unterminated string");
      const char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) Error("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) Error("unterminated string");
      const char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = Hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && s_.compare(i_, 2, "\\u") == 0) {
            i_ += 2;
            const unsigned lo = Hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) Error("bad surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          AppendUtf8(out, cp);
          break;
        }
        default: Error("bad escape");
      }
    }
  }

  const std::string &s_;
  size_t i_ = 0;
};

}  // namespace

const JsonValue *JsonValue::Find(const std::string &key) const {
  const JsonValue *found = nullptr;
  for (const auto &kv : object)
    if (kv.first == key) found = &kv.second;
  return found;
}

std::string JsonValue::Describe() const {
  switch (kind) {
    case kNull: return "null";
    case kBool: return boolean ? "true" : "false";
    case kNumber: return string;
    case kString: return "\"" + string + "\"";
    case kArray: return "an array";
    case kObject: return "an object";
  }
  return "?";
}

JsonValue ParseJson(const std::string &text) { return Parser(text).Document(); }

}  // namespace dali_relabel
