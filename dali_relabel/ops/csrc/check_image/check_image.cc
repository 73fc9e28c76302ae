// fn.relabel.check_image: pass-through of encoded images that fails, naming the file, on images
// the decoder would reject or silently half-decode (garbage, wrong format, truncated downloads).
//
// Why an operator: DALI's decoders report such files as e.g. "nvImageCodec failure: '#3'",
// without the file name, and decode a JPEG truncated inside its entropy-coded data into a
// partly grey image without any error. The reader attaches each sample's file path as its
// source info, so a check placed right after the reader can name the file.
#include "check_image/check_image.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <vector>

#include "dali/pipeline/operator/operator.h"
#include "util/errors.h"

namespace dali_relabel {
namespace {

// Trailers after the end marker (padding, appended metadata) are tolerated up to this size.
constexpr size_t kTrailerWindow = 64 * 1024;

bool StartsWith(const uint8_t *data, size_t size, const char *sig, size_t n) {
  return size >= n && std::memcmp(data, sig, n) == 0;
}

bool FoundNearEnd(const uint8_t *data, size_t size, const char *marker, size_t n) {
  const size_t window = std::min(size, kTrailerWindow);
  const uint8_t *begin = data + size - window;
  const auto *m = reinterpret_cast<const uint8_t *>(marker);  // compare bytes unsigned
  return std::search(begin, data + size, m, m + n) != data + size;
}

std::string Hex(const uint8_t *data, size_t size) {
  std::ostringstream ss;
  for (size_t i = 0; i < std::min<size_t>(size, 8); ++i) {
    static const char *digits = "0123456789abcdef";
    ss << digits[data[i] >> 4] << digits[data[i] & 15];
  }
  return ss.str();
}

}  // namespace

std::string EncodedImageProblem(const uint8_t *data, size_t size) {
  if (size == 0) return "empty file";
  if (StartsWith(data, size, "\xff\xd8\xff", 3))
    return FoundNearEnd(data, size, "\xff\xd9", 2) ? "" : "truncated JPEG (no end-of-image marker)";
  if (StartsWith(data, size, "\x89PNG\r\n\x1a\n", 8))
    return FoundNearEnd(data, size, "IEND", 4) ? "" : "truncated PNG (no IEND chunk)";
  const bool riff_webp = size >= 12 && std::memcmp(data, "RIFF", 4) == 0 && std::memcmp(data + 8, "WEBP", 4) == 0;
  if (StartsWith(data, size, "BM", 2) || StartsWith(data, size, "II*\0", 4) || StartsWith(data, size, "MM\0*", 4) ||
      riff_webp || StartsWith(data, size, "\0\0\0\x0cjP  ", 8) || StartsWith(data, size, "\xff\x4f\xff\x51", 4) ||
      (size >= 2 && data[0] == 'P' && data[1] >= '1' && data[1] <= '6'))
    return "";  // BMP, TIFF, WebP, JPEG 2000 (file / codestream), PNM: signature only
  return "not an image format DALI decodes (first bytes " + Hex(data, size) + ")";
}

class CheckImage : public ::dali::Operator<::dali::CPUBackend> {
 public:
  explicit CheckImage(const ::dali::OpSpec &spec) : ::dali::Operator<::dali::CPUBackend>(spec) {}

 protected:
  bool HasContiguousOutputs() const override { return false; }  // shares the reader's samples

  bool SetupImpl(std::vector<::dali::OutputDesc> &, const ::dali::Workspace &ws) override {
    const auto &in = ws.Input<::dali::CPUBackend>(0);
    if (in.type() != ::DALI_UINT8 || in.sample_dim() != 1)
      Fail("relabel.check_image", "expects encoded images (1-D uint8 samples, e.g. from fn.readers.file), got ",
           in.sample_dim(), "-D ", ::daliDataTypeName(in.type()), ".");
    return false;
  }

  void RunImpl(::dali::Workspace &ws) override {
    const auto &in = ws.Input<::dali::CPUBackend>(0);
    for (int i = 0; i < in.num_samples(); ++i) {
      const std::string problem = EncodedImageProblem(static_cast<const uint8_t *>(in.raw_tensor(i)),
                                                      in.tensor_shape(i).num_elements());
      if (!problem.empty()) {
        const std::string &source = in.GetMeta(i).GetSourceInfo();
        Fail("relabel.check_image", source.empty() ? "sample " + std::to_string(i) : "'" + source + "'", ": ",
             problem, ". Replace or remove the file; `dali-relabel verify STORE --images DIR` lists every "
             "undecodable image.");
      }
    }
    ws.Output<::dali::CPUBackend>(0).ShareData(in);
  }
};

}  // namespace dali_relabel

DALI_SCHEMA(relabel__CheckImage)
    .DocStr(R"code(Passes encoded images through unchanged after checking that each is a complete image
file of a format DALI decodes: the JPEG/PNG/BMP/TIFF/WebP/JPEG 2000/PNM signature, and for JPEG and PNG
an end marker within the last 64 KiB (so truncated downloads are caught; the decoders would fill a JPEG
truncated inside its image data with grey without reporting it). On failure the error names the file
(the reader's source info) and the problem. Costs a few byte comparisons per image.)code")
    .NumInput(1)
    .NumOutput(1)
    .PassThrough({{0, 0}})
    .InputDox(0, "encoded", "TensorList of 1-D uint8", "Encoded images, e.g. from fn.readers.file.");

DALI_REGISTER_OPERATOR(relabel__CheckImage, ::dali_relabel::CheckImage, ::dali::CPU);
