// Encoded-image sanity checks for fn.relabel.check_image (host only: it inspects file bytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dali_relabel {

/// Why an encoded image cannot be decoded, or "" if it looks complete. Checks the signature of
/// the formats DALI decodes and, for JPEG and PNG, that the file is not truncated (its end marker
/// is present near the end). Does not decode: that is the decoder's job, and far slower.
std::string EncodedImageProblem(const uint8_t *data, size_t size);

}  // namespace dali_relabel
