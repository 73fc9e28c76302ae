// fn.relabel.label_pool: the schema. It lives here, not next to a backend, so that a CPU-only
// build (no nvcc) still registers it.
#include "label_pool/label_pool.h"

// DALI_SCHEMA and DALI_REGISTER_OPERATOR must meet in the global namespace.
DALI_SCHEMA(relabel__LabelPool)
    .DocStr(R"code(Soft target of a crop from a top-k label map (ReLabel's LabelPooling).

For each sample, with ``scores`` and ``classes`` of shape ``[H, W, K]`` (rows = image y) and
the crop box given by ``rel_start = (y0, x0)`` and ``rel_end = (y1, x1)`` normalized to the
full image, the output is a float32 vector of ``num_classes`` values::

    D = zeros(num_classes, H, W)                       # dense label map, never built
    for r, c, k: D[classes[r, c, k], r, c] += scores[r, c, k]
    if label_type in ("global_multi", "global_single"): (y0, x0, y1, x1) = (0, 0, 1, 1)
    if transpose_box and not global:                   # relabel_imagenet, as it computes it
        c = float32([y0, x0, y1, x1])                  # the corners as given (float32)
        box = c * float32(W) - float32(0.5)            # float32, two roundings; W for every corner
        z = torchvision.ops.roi_align(float32(D)[None], [box], output_size=(1, 1))
                                                       # geometry in float32; sums in float64 here
    else:
        box = (x0 * W - 0.5, y0 * H - 0.5, x1 * W - 0.5, y1 * H - 0.5)   # float64, (x1, y1, x2, y2)
        z = torchvision.ops.roi_align(float64(D)[None], [box], output_size=(1, 1), spatial_scale=1,
                                      sampling_ratio=-1, aligned=False)   # -> [num_classes]
    if output == "logits":        output = z            # linear in the box: regions combine
    elif label_type ends "single": output = one_hot(argmax(z))   # ties: lowest class index
    else:                         output = softmax(z / temperature)   # over all classes

``label_type`` selects the four label types of the paper's factor analysis: ``localized_multi``
(the method, default), ``localized_single``, ``global_multi`` (the whole map, i.e. its mean over
cells), ``global_single``. Global types ignore ``rel_start``/``rel_end``, which may be omitted.

Classes outside the stored top-k have logit 0 (not -inf), as in relabel_imagenet. The 1x1
RoIAlign is separable, so only the ``H*W*K`` stored entries are visited and the softmax over
the zero background is done in closed form on the CPU.

``transpose_box=True`` reproduces the official relabel_imagenet code: it hands roi_align a
``(y0, x0, y1, x1)`` box where ``(x1, y1, x2, y2)`` is expected, i.e. it pools the transposed
box of maps stored with rows = y, and it computes the whole geometry in float32 (box scaling,
extent clamp, sample count ``ceil(extent)``, sample positions, bilinear fractions) in the order of
torchvision's float32 kernels, so it takes the official sample grid even for boxes spanning whole
cells, where a float64 geometry can take another sample count. Only the weighted sums are float64: the
targets are within 1e-6 of the official pooled logits' softmax (and within the float32 rounding
of torch's softmax, ~3e-6, of the official float32 run), given the official float32 corners
``float32(float64(i/H) + float64(h/H))``, which ``(anchor + shape) / size`` in float32 equals.

Errors name the sample: scores/classes shapes differ or are not 3-D, a class index outside
``[0, num_classes)``, a non-finite score, ``rel_start >= rel_end`` on an axis, corners
outside ``[0, 1]``, unsupported dtypes. With ``validate=False`` the per-entry checks are
skipped (invalid entries are ignored instead); on the GPU this avoids a stream
synchronization per batch and is meant for maps already verified, e.g. a served bank.)code")
    .NumInput(2)
    .NumOutput(1)
    .InputDox(0, "scores", "TensorList of [H, W, K] float16 or float32",
              "Top-k logits per map cell (the machine annotator's pre-softmax scores).")
    .InputDox(1, "classes", "TensorList of [H, W, K] int16 or int32",
              "Class index of each stored score, in ``[0, num_classes)``.")
    .AddOptionalArg<std::vector<float>>(
        "rel_start", "Normalized (y, x) of the crop's top-left corner, float32 [2] per sample (required "
        "unless label_type is global).", nullptr, /*enable_tensor_input=*/true)
    .AddOptionalArg<std::vector<float>>(
        "rel_end", "Normalized (y, x) of the crop's bottom-right corner, float32 [2] per sample (required "
        "unless label_type is global).", nullptr, /*enable_tensor_input=*/true)
    .AddArg("num_classes", "Number of classes C; the output has shape [C].", ::DALI_INT32)
    .AddOptionalArg("temperature", "Softmax temperature T: output = softmax(z / T).", 1.0f)
    .AddOptionalArg("label_type",
                    "localized_multi (default), localized_single, global_multi or global_single.",
                    std::string("localized_multi"))
    .AddOptionalArg("output",
                    "'probabilities' (default: the target) or 'logits' (the pooled logits z, for combining "
                    "regions linearly before a softmax; multi-label types only).",
                    std::string("probabilities"))
    .AddOptionalArg("transpose_box",
                    "Reproduce the official relabel_imagenet code: swap the box's y and x axes as it does, "
                    "and compute the RoIAlign geometry in float32 as it does (see above).", false)
    .AddOptionalArg("validate",
                    "Check every stored entry (class range, finite score) and raise on the first bad "
                    "sample. On the GPU this costs one stream synchronization per batch.",
                    true);
