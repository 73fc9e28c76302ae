// The serving bank as the operators see it: a directory written by dali_relabel.LabelBank,
// of which the operators read scores.npy, classes.npy and labels.npy, validated against each
// other and memory-mapped read-only. bank.json belongs to the Python side (LabelBank), which
// owns the checks that need it (e.g. that int16 classes can hold num_classes); the .npy
// headers already carry every dtype and shape the operators need.
//
// Banks are opened through Bank::Open, which shares one mapping per process for each bank
// (keyed by the canonical path and the files' identities), so several operator instances and
// pipelines map a bank once. A bank is immutable while mapped: LabelBank creates it atomically
// and never rewrites it; replacing it (new inodes) yields a new Bank on the next Open.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dali/core/dali_data_type.h"

namespace dali_relabel {

/// A read-only memory mapping of a whole file.
class MappedFile {
 public:
  /// Maps `path`; throws (naming `op` and the file) if it cannot be opened or mapped.
  MappedFile(const char *op, const std::string &path);
  ~MappedFile();
  MappedFile(const MappedFile &) = delete;
  MappedFile &operator=(const MappedFile &) = delete;

  const unsigned char *data() const { return data_; }
  size_t size() const { return size_; }
  const std::string &path() const { return path_; }

 private:
  std::string path_;
  const unsigned char *data_ = nullptr;
  size_t size_ = 0;
};

/// One array of the bank: a mapped .npy file and where its C-order data lies in the mapping.
struct NpyArray {
  std::unique_ptr<MappedFile> file;
  ::daliDataType_t dtype = ::DALI_NO_TYPE;
  std::vector<int64_t> shape;
  size_t data_offset = 0;  // bytes from the start of the file to element 0
  size_t data_bytes = 0;   // product(shape) * item size
  size_t item_size = 0;    // bytes per element

  const void *data() const { return file->data() + data_offset; }
};

/// The parsed header of a .npy file.
struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
  size_t data_offset = 0;
};

/// Parses the header of a .npy file held in `bytes` (format versions 1, 2 and 3); throws an
/// error naming `op` and `path` that says what is wrong.
NpyHeader ParseNpyHeader(const char *op, const std::string &path, const unsigned char *bytes, size_t size);

class Bank {
 public:
  /// Opens the bank directory `dir` (shared per process while any holder keeps it), checking
  /// that the three .npy files are present, well formed and consistent with each other
  /// (scores [N, H, W, K] float16 or float32, classes of the same shape, labels [N]). Throws an error
  /// that names `op`, the file and what to do.
  static std::shared_ptr<const Bank> Open(const char *op, const std::string &dir);

  const std::string &path() const { return path_; }  // canonical directory path
  /// Process-wide identity of this mapping (canonical path + identities of the .npy files).
  const std::string &key() const { return key_; }
  int64_t num_samples() const { return num_samples_; }
  int64_t height() const { return height_; }
  int64_t width() const { return width_; }
  int64_t k() const { return k_; }
  /// Elements per sample in scores/classes: H * W * K.
  int64_t sample_elements() const { return height_ * width_ * k_; }

  const NpyArray &scores() const { return scores_; }    // float16 or float32 [N, H, W, K]
  const NpyArray &classes() const { return classes_; }  // int16 or int32 [N, H, W, K]
  const NpyArray &labels() const { return labels_; }    // int32 [N]

  ::daliDataType_t scores_type() const { return scores_.dtype; }
  ::daliDataType_t classes_type() const { return classes_.dtype; }
  /// Bytes of one sample's row in scores.npy / classes.npy.
  size_t score_row_bytes() const { return sample_elements() * scores_.item_size; }
  size_t class_row_bytes() const { return sample_elements() * classes_.item_size; }

 private:
  Bank() = default;
  std::string path_, key_;
  int64_t num_samples_ = 0, height_ = 0, width_ = 0, k_ = 0;
  NpyArray scores_, classes_, labels_;

  friend std::shared_ptr<Bank> OpenUncached(const char *op, const std::string &dir, const std::string &key);
};

}  // namespace dali_relabel
