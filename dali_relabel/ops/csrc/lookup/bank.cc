// Opening, validating and memory-mapping a serving bank (see bank.h).
#include "lookup/bank.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>

#include "lookup/mapping_guard.h"
#include "util/errors.h"

namespace dali_relabel {
namespace {

constexpr const char *kRecreate = "recreate the bank with LabelStore.materialize()";

std::string ShapeTuple(const std::vector<int64_t> &shape) {
  std::ostringstream ss;
  ss << "(";
  for (size_t i = 0; i < shape.size(); ++i) ss << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) ss << ",";
  ss << ")";
  return ss.str();
}

// --- .npy header --------------------------------------------------------------------------------
// The header is a Python dict literal written by numpy, e.g.
//   {'descr': '<f2', 'fortran_order': False, 'shape': (3, 15, 15, 5), }
// We accept exactly that grammar (keys and strings in single or double quotes, True/False, a
// tuple of non-negative integers) and reject anything else as corrupt.
class NpyDictParser {
 public:
  NpyDictParser(const char *op, const std::string &path, std::string text)
      : op_(op), path_(path), text_(std::move(text)) {}

  NpyHeader Parse() {
    NpyHeader h;
    bool has_descr = false, has_order = false, has_shape = false;
    Expect('{');
    while (true) {
      SkipSpace();
      if (Peek() == '}') break;
      const std::string key = String();
      Expect(':');
      if (key == "descr") {
        h.descr = String();
        has_descr = true;
      } else if (key == "fortran_order") {
        h.fortran_order = Bool();
        has_order = true;
      } else if (key == "shape") {
        h.shape = Tuple();
        has_shape = true;
      } else {
        Bad("unexpected key '" + key + "'");
      }
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      if (Peek() != '}') Bad("expected ',' or '}'");
    }
    ++pos_;
    SkipSpace();
    if (pos_ != text_.size()) Bad("trailing characters after the dict");
    if (!has_descr || !has_order || !has_shape) Bad("it needs the keys 'descr', 'fortran_order' and 'shape'");
    return h;
  }

 private:
  [[noreturn]] void Bad(const std::string &why) {
    Fail(op_, path_, ": corrupt .npy header (", why, " in \"", text_, "\"); ", kRecreate, ".");
  }
  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\t')) ++pos_;
  }
  char Peek() { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void Expect(char c) {
    SkipSpace();
    if (Peek() != c) Bad(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string String() {
    SkipSpace();
    const char q = Peek();
    if (q != '\'' && q != '"') Bad("expected a quoted string");
    const size_t end = text_.find(q, pos_ + 1);
    if (end == std::string::npos) Bad("unterminated string");
    std::string s = text_.substr(pos_ + 1, end - pos_ - 1);
    pos_ = end + 1;
    return s;
  }
  bool Bool() {
    SkipSpace();
    if (text_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (text_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    Bad("expected True or False");
  }
  std::vector<int64_t> Tuple() {
    std::vector<int64_t> dims;
    Expect('(');
    while (true) {
      SkipSpace();
      if (Peek() == ')') break;
      if (Peek() < '0' || Peek() > '9') Bad("expected a non-negative integer dimension");
      int64_t v = 0;
      while (Peek() >= '0' && Peek() <= '9') {
        if (v > (INT64_MAX - 9) / 10) Bad("dimension too large");
        v = v * 10 + (text_[pos_++] - '0');
      }
      if (Peek() == 'L') ++pos_;  // Python 2 longs
      dims.push_back(v);
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      if (Peek() != ')') Bad("expected ',' or ')' in the shape");
    }
    ++pos_;
    return dims;
  }

  const char *op_;
  const std::string &path_;
  std::string text_;
  size_t pos_ = 0;
};

struct DtypeInfo {
  const char *descr;
  ::daliDataType_t type;
  size_t size;
  const char *name;
};
constexpr DtypeInfo kFloat16{"<f2", ::DALI_FLOAT16, 2, "float16"};
constexpr DtypeInfo kFloat32{"<f4", ::DALI_FLOAT, 4, "float32"};
constexpr DtypeInfo kInt16{"<i2", ::DALI_INT16, 2, "int16"};
constexpr DtypeInfo kInt32{"<i4", ::DALI_INT32, 4, "int32"};

// Maps `path` and checks it holds a C-order array of one of `allowed` dtypes with `ndim` dims.
NpyArray OpenNpy(const char *op, const std::string &path, std::initializer_list<DtypeInfo> allowed, size_t ndim,
                 const char *dims_doc) {
  NpyArray a;
  a.file = std::make_unique<MappedFile>(op, path);
  const NpyHeader h = ParseNpyHeader(op, path, a.file->data(), a.file->size());
  const DtypeInfo *info = nullptr;
  for (const DtypeInfo &d : allowed)
    if (h.descr == d.descr) info = &d;
  if (!info) {
    std::ostringstream expected;
    for (const DtypeInfo &d : allowed) expected << (&d == allowed.begin() ? "" : " or ") << d.name << " ('" << d.descr << "')";
    Fail(op, path, ": dtype '", h.descr, "', expected ", expected.str(), "; ", kRecreate, ".");
  }
  if (h.fortran_order)
    Fail(op, path, ": the array is stored in Fortran order; the bank needs C order (np.ascontiguousarray before "
         "np.save); ", kRecreate, ".");
  if (h.shape.size() != ndim)
    Fail(op, path, ": shape ", ShapeTuple(h.shape), " has ", h.shape.size(), " dimensions, expected ", ndim, " ",
         dims_doc, "; ", kRecreate, ".");
  size_t count = 1;
  for (int64_t d : h.shape) {
    if (d != 0 && count > SIZE_MAX / 8 / static_cast<size_t>(d))
      Fail(op, path, ": shape ", ShapeTuple(h.shape), " is too large; ", kRecreate, ".");
    count *= static_cast<size_t>(d);
  }
  a.dtype = info->type;
  a.shape = h.shape;
  a.data_offset = h.data_offset;
  a.data_bytes = count * info->size;
  a.item_size = info->size;
  const size_t have = a.file->size() - h.data_offset;
  if (have != a.data_bytes)
    Fail(op, path, ": holds ", have, " bytes of array data but shape ", ShapeTuple(h.shape), " of ", info->name,
         " needs ", a.data_bytes, " (the file is ", have < a.data_bytes ? "truncated" : "longer than its header says",
         "); ", kRecreate, ".");
  return a;
}

std::string FileIdentity(const char *op, const std::string &path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    Fail(op, path, ": ", errno == ENOENT ? "missing" : std::strerror(errno), "; the bank directory is incomplete, ",
         kRecreate, ".");
  if (!S_ISREG(st.st_mode)) Fail(op, path, ": not a regular file; ", kRecreate, ".");
  std::ostringstream ss;
  ss << st.st_dev << ":" << st.st_ino << ":" << st.st_size << ":" << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec;
  return ss.str();
}

}  // namespace

MappedFile::MappedFile(const char *op, const std::string &path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Fail(op, path, ": cannot open (", std::strerror(errno), ").");
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    Fail(op, path, ": cannot stat (", std::strerror(err), ").");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    // MAP_SHARED + PROT_READ: every process (rank) mapping the bank shares the same page-cache
    // (or /dev/shm) pages, so a node holds one copy in RAM however many ranks read it.
    void *p = mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      Fail(op, path, ": cannot memory-map ", size_, " bytes (", std::strerror(err), ").");
    }
    data_ = static_cast<const unsigned char *>(p);
    RegisterMapping(data_, size_, path_);  // a SIGBUS in it (the file shrunk) is reported naming the file
  }
  ::close(fd);  // the mapping stays valid without the descriptor
}

MappedFile::~MappedFile() {
  UnregisterMapping(data_);
  if (data_) munmap(const_cast<unsigned char *>(data_), size_);
}

NpyHeader ParseNpyHeader(const char *op, const std::string &path, const unsigned char *bytes, size_t size) {
  static const unsigned char kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10 || std::memcmp(bytes, kMagic, 6) != 0)
    Fail(op, path, ": not a .npy file (", size < 10 ? "too short" : "bad magic bytes", "); ", kRecreate, ".");
  const int major = bytes[6], minor = bytes[7];
  size_t header_len, prefix;
  if (major == 1) {
    header_len = bytes[8] | (bytes[9] << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) Fail(op, path, ": not a .npy file (too short); ", kRecreate, ".");
    header_len = static_cast<size_t>(bytes[8]) | (static_cast<size_t>(bytes[9]) << 8) |
                 (static_cast<size_t>(bytes[10]) << 16) | (static_cast<size_t>(bytes[11]) << 24);
    prefix = 12;
  } else {
    Fail(op, path, ": unsupported .npy format version ", major, ".", minor, " (1.0, 2.0 and 3.0 are known); ",
         kRecreate, ".");
  }
  if (header_len > size - prefix)
    Fail(op, path, ": truncated .npy header (", header_len, " bytes announced, file has ", size, "); ", kRecreate,
         ".");
  std::string text(reinterpret_cast<const char *>(bytes + prefix), header_len);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\0')) text.pop_back();
  NpyHeader h = NpyDictParser(op, path, text).Parse();
  h.data_offset = prefix + header_len;
  return h;
}

std::shared_ptr<Bank> OpenUncached(const char *op, const std::string &dir, const std::string &key) {
  std::shared_ptr<Bank> bank(new Bank());
  bank->path_ = dir;
  bank->key_ = key;

  // bank.json (written and read by the Python LabelBank) is not opened here: the .npy headers
  // already give every dtype and shape, and the three must agree with each other.
  const std::string scores_path = dir + "/scores.npy", classes_path = dir + "/classes.npy",
                    labels_path = dir + "/labels.npy";
  bank->scores_ = OpenNpy(op, scores_path, {kFloat16, kFloat32}, 4, "[N, H, W, K]");
  bank->classes_ = OpenNpy(op, classes_path, {kInt16, kInt32}, 4, "[N, H, W, K]");
  bank->labels_ = OpenNpy(op, labels_path, {kInt32}, 1, "[N]");
  const std::vector<int64_t> &shape = bank->scores_.shape;
  // N may be 0 (an empty bank rejects every index); a label map needs at least one cell and one entry.
  if (shape[1] < 1 || shape[2] < 1 || shape[3] < 1)
    Fail(op, scores_path, ": shape ", ShapeTuple(shape), " [N, H, W, K] is empty (H, W and K must be >= 1); ",
         kRecreate, ".");
  if (bank->classes_.shape != shape)
    Fail(op, classes_path, ": shape ", ShapeTuple(bank->classes_.shape), " disagrees with scores.npy shape ",
         ShapeTuple(shape), " (both are [N, H, W, K]); ", kRecreate, ".");
  if (bank->labels_.shape != std::vector<int64_t>{shape[0]})
    Fail(op, labels_path, ": shape ", ShapeTuple(bank->labels_.shape), " disagrees with scores.npy, which holds N=",
         shape[0], " samples (labels is [N]); ", kRecreate, ".");
  bank->num_samples_ = shape[0];
  bank->height_ = shape[1];
  bank->width_ = shape[2];
  bank->k_ = shape[3];
  return bank;
}

std::shared_ptr<const Bank> Bank::Open(const char *op, const std::string &dir) {
  if (dir.empty()) Fail(op, "the bank argument is empty; pass str(LabelBank.path), the bank directory.");
  char *resolved = realpath(dir.c_str(), nullptr);
  if (!resolved)
    Fail(op, "bank directory '", dir, "' ", errno == ENOENT ? "does not exist" : std::strerror(errno),
         "; create a bank with LabelStore.materialize() and pass str(LabelBank.path).");
  const std::string canonical(resolved);
  std::free(resolved);
  struct stat st;
  if (stat(canonical.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    Fail(op, "bank '", dir, "' is not a directory; pass str(LabelBank.path), the bank directory.");

  // The identity of every file is part of the key, so a bank replaced under the same path
  // (new inodes or mtimes) is opened afresh instead of being served from a stale mapping.
  std::string key = canonical;
  for (const char *name : {"scores.npy", "classes.npy", "labels.npy"})
    key += "|" + FileIdentity(op, canonical + "/" + name);

  // Leaked on purpose: operators may be destroyed during interpreter shutdown, after the
  // destructors of function-local statics would have run.
  static std::mutex *mutex = new std::mutex;
  static auto *cache = new std::map<std::string, std::weak_ptr<const Bank>>;
  std::lock_guard<std::mutex> guard(*mutex);
  for (auto it = cache->begin(); it != cache->end();) it = it->second.expired() ? cache->erase(it) : std::next(it);
  if (auto it = cache->find(key); it != cache->end())
    if (auto bank = it->second.lock()) return bank;
  std::shared_ptr<const Bank> bank = OpenUncached(op, canonical, key);
  (*cache)[key] = bank;
  return bank;
}

}  // namespace dali_relabel
