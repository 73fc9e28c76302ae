// fn.relabel.lookup: the schema. It lives here, not next to a backend, so that a CPU-only build
// (no nvcc) still registers it.
#include "lookup/lookup.h"

// DALI_SCHEMA and DALI_REGISTER_OPERATOR must meet in the global namespace.
DALI_SCHEMA(relabel__Lookup)
    .DocStr(R"code(Gathers each sample's top-k label map from a serving bank by row number.

``bank`` is the directory of a ``dali_relabel.LabelBank`` (``str(bank.path)``): ``scores.npy``
(float16 or float32 ``[N, H, W, K]``), ``classes.npy`` (int16 or int32 ``[N, H, W, K]``), ``labels.npy``
(int32 ``[N]``); its ``bank.json`` is for the Python ``LabelBank`` and is not read here. The
three arrays are checked against each other (same ``[N, H, W, K]`` for scores and classes,
``N`` labels) and memory-mapped read-only when the operator is built, once per process for all
operators naming the same bank. For each sample
with row ``r = row[sample]`` the three outputs are exactly::

    scores  = np.load("scores.npy",  mmap_mode="r")[r]    # [H, W, K] float16 or float32 (the bank's dtype)
    classes = np.load("classes.npy", mmap_mode="r")[r]    # [H, W, K] int16 or int32 (the bank's dtype)
    label   = np.load("labels.npy",  mmap_mode="r")[r]    # []        int32 (-1: unknown)

The operator has no regular inputs; the batch size is that of ``row``, a per-sample CPU
argument input of dtype int32 or int64 and shape ``[]`` or ``[1]``: typically the label of
``fn.readers.file`` whose file list maps each image to its bank row. A row outside ``[0, N)``
is an error naming the sample, the row and the bank's size.

On the CPU the rows are copied from the mapped files by the thread pool. On the GPU
(``device="gpu"``) one batched kernel per iteration gathers the rows; where it reads them from
is set by ``bank_memory``:

* ``"device"`` (default): the bank's arrays are copied into device memory at the first
  iteration, once per process and GPU: every operator instance (every pipeline) on that GPU
  shares the copy, which is freed when the last of them is destroyed.
* ``"host"``: nothing is copied to the GPU; the kernel reads the memory-mapped bank directly
  over the bus. The mapping is page-locked with ``cudaHostRegister`` once per process (shared
  with other processes through the page cache); if the system refuses to pin the file mapping,
  a private pinned copy is made instead, with a warning. For GPUs that cannot hold the bank.)code")
    .NumInput(0)
    .NumOutput(3)
    .AddArg("bank", "Directory of the serving bank (str(LabelBank.path)).", ::DALI_STRING)
    .AddArg("row",
            "Row of the bank for each sample: int32 or int64, shape [] or [1] (e.g. fn.readers.file labels).",
            ::DALI_INT32, /*enable_tensor_input=*/true)
    // One name for the concept across Python and the schema: the loaders' `rows` output, ReLabelMix(rows=).
    .DeprecateArgInFavorOf("index", "row", "0.1.0")
    .AddOptionalArg("bank_memory",
                    "GPU backend: \"device\" copies the bank to device memory once per process and GPU; "
                    "\"host\" keeps it in page-locked host memory that the kernel reads directly. "
                    "The CPU backend always reads the memory-mapped files.",
                    "device");
