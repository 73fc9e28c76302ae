"""The machine annotator: runs a classifier fully convolutionally over an image tree into a label store.

For every image: decode and resize it to ``size``×``size`` (DALI, on the GPU when running on CUDA), run the
classifier with its global pooling removed (:mod:`dali_relabel.annotate.dense`), keep the top-k logits and classes of
every cell, and write them into a :class:`dali_relabel.LabelStore` one whole block at a time.

Long-job behaviour:

* resumable: finished blocks are skipped; a killed run rerun with the same arguments ends with the same
  store as an uninterrupted one (batches never straddle blocks and every block is cut into the same
  batches, so each image is always computed in the same batch);
* refuses to resume into a store made with other arguments (the ``annotator`` attributes must match);
* several processes (``torchrun --nproc-per-node N -m dali_relabel.annotate ...``, or ``--rank/--world-size``)
  write disjoint blocks into the same store (local, shared storage or an fsspec URL), and the result is the
  same as one process's. Under torchrun the unfinished blocks are dealt out evenly by rank 0; independent
  processes own block ``b`` when ``b % world_size == rank``.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import os
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..distributed import process_ranks
from ..errors import DaliRelabelError, InvalidArgument
from ..image_folder import IMAGE_EXTENSIONS, ImageList, is_inside, list_images
from ..training import amp_dtype
from .dense import check_conversion, to_dense
from .models import load_model

FLOAT16_MAX = float(np.finfo(np.float16).max)
ENV_STORE_WAIT = "DALI_RELABEL_STORE_WAIT_S"
PROCESS_GROUP_TIMEOUT_H = 48
DEFAULT_STORE_WAIT_S = 600.0


class AnnotateError(DaliRelabelError, ValueError):
    """Arguments, images or an existing store that cannot be used (message says what to do)."""


def store_wait_seconds() -> float:
    """How long ranks other than 0 wait for rank 0 to create the store ($DALI_RELABEL_STORE_WAIT_S, default 600)."""
    value = os.environ.get(ENV_STORE_WAIT, "")
    if not value:
        return DEFAULT_STORE_WAIT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise AnnotateError(f"environment variable {ENV_STORE_WAIT}={value!r} is not a number of seconds >= 0")
    return seconds


def list_image_tree(images: str) -> ImageList:
    """The images to annotate, in store order, as the training loader lists them (``ImageList.from_path``).

    A directory is read as ImageFolder class folders (labels = folder index); a directory without class
    folders gives its images unlabelled (−1); a file is an image list (``<relative path> [label]`` lines).

    Raises:
        FileNotFoundError: ``images`` does not exist or lists no image.
    """
    listing = ImageList.from_path(images)
    if listing.classes == []:   # a folder without class folders
        links: list[str] = []
        keys = list_images(images, links)
        listing = ImageList(listing.root, keys, [-1] * len(keys), [], skipped_links=links)
    if listing.skipped_links:
        shown = "; ".join(listing.skipped_links[:5])
        more = f" and {len(listing.skipped_links) - 5} more" if len(listing.skipped_links) > 5 else ""
        warnings.warn(f"{len(listing.skipped_links)} symbolic link(s) under {images} not followed: {shown}{more}",
                      stacklevel=2)
    if not listing.keys:
        raise FileNotFoundError(f"no images under {images} (ImageFolder layout: {images}/<class>/<image>; "
                                f"extensions {', '.join(IMAGE_EXTENSIONS)})")
    return listing


@dataclass
class AnnotateReport:
    """What one process did.

    Attributes:
        store: the store's path or URL.
        rank, world_size: this process's share.
        images: images annotated by this process in this run (padding excluded).
        blocks: blocks written by this process in this run.
        skipped_blocks: blocks of the store (all ranks') already complete when this process started.
        setup_s: seconds spent before the first batch was requested (listing, model, probe, store, pipeline).
        loop_s: seconds spent annotating (decode + inference + top-k + writes).
        complete: whether the whole store was complete when this process finished.
    """

    store: str
    rank: int
    world_size: int
    images: int
    blocks: int
    skipped_blocks: int
    setup_s: float
    loop_s: float
    complete: bool


class _Ranks:
    """This process's rank and world size, and barriers when torch.distributed is available (torchrun)."""

    def __init__(self, rank: int | None, world_size: int | None):
        try:
            env = process_ranks()
            ranks = process_ranks(rank, world_size)
        except ValueError as e:
            raise AnnotateError(str(e)) from None
        env_world = env.world_size
        self.world, self.rank = ranks.world_size, ranks.rank
        self.local_rank = ranks.local_rank if ranks.local_rank is not None else self.rank
        # torchrun sets MASTER_ADDR: then ranks synchronise (store created once, end reported once).
        # Explicit --rank/--world-size without it run independently (they only share the store).
        self.dist = None
        if self.world > 1 and "MASTER_ADDR" in os.environ and self.world == env_world:
            import torch.distributed as dist

            if not dist.is_initialized():
                if "TORCHELASTIC_RUN_ID" not in os.environ:  # launched by hand: the others may never come
                    print(f"rank {self.rank} of {self.world}: joining the torch.distributed process group at "
                          f"{os.environ['MASTER_ADDR']}:{os.environ.get('MASTER_PORT', '?')}: waits for all "
                          f"{self.world} ranks, for up to {PROCESS_GROUP_TIMEOUT_H} h (unset MASTER_ADDR to run "
                          f"the ranks independently)", file=sys.stderr, flush=True)
                # gloo: only barriers and small objects, works everywhere. The long timeout covers the final
                # barrier, where ranks that finished wait for the slowest one.
                dist.init_process_group("gloo", timeout=datetime.timedelta(hours=PROCESS_GROUP_TIMEOUT_H))
            self.dist = dist

    def barrier(self) -> None:
        if self.dist is not None:
            self.dist.barrier()

    def broadcast(self, obj: object) -> object:
        """rank 0's ``obj`` on every rank (identity without torch.distributed)."""
        if self.dist is None:
            return obj
        box = [obj]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.dist is not None and self.dist.is_initialized():
            self.dist.destroy_process_group()


def _device(device: str | None, ranks: _Ranks) -> torch.device:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cuda", "cpu"):
        raise InvalidArgument("device", device, "must be cuda or cpu", where="annotate")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InvalidArgument("device", device, "torch sees no CUDA GPU; use cpu", where="annotate")
    index = ranks.local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def _open_store(url: str, create_args: dict, ranks: _Ranks):
    """Creates the store (rank 0) or opens it for resuming; every rank validates the arguments."""
    from ..store import LabelStore

    def create():
        try:
            existing = LabelStore.open(url)
        except (FileNotFoundError, ValueError):   # nothing there yet, or an interrupted creation
            existing = None
        try:
            return LabelStore.create(url, exist_ok=True, **create_args)
        except ValueError as e:
            if existing is None:
                raise AnnotateError(f"cannot create the label store {url}: {e}") from e
            changed = _changed_fields(existing.annotator, create_args["annotator"])
            detail = f"; changed annotator arguments: {changed}" if changed else ""
            raise AnnotateError(f"{url} holds a store made with other arguments or images ({e}){detail}; rerun "
                                "with the same arguments to resume it, or write to another store") from e

    if ranks.rank == 0:
        try:
            store = create()
        except Exception as e:
            ranks.broadcast(f"{type(e).__name__}: {e}")   # release the other ranks waiting below
            raise
        ranks.broadcast(None)
        return store
    error = ranks.broadcast(None)
    if error is not None:
        raise AnnotateError(f"rank 0 could not create {url}: {error}")
    if ranks.dist is None:
        _wait_for_store(url, ranks)
    return create()


def _changed_fields(old: dict, new: dict) -> str:
    names = sorted(set(old) | set(new), key=lambda k: (k not in new, k))
    return ", ".join(f"{k} (store: {old.get(k)!r}, now: {new.get(k)!r})" for k in names if old.get(k) != new.get(k))


def _wait_for_store(url: str, ranks: _Ranks) -> None:
    """Without torch.distributed, ranks other than 0 wait until rank 0 has created the store (saying so)."""
    from ..store import LabelStore

    wait = store_wait_seconds()
    deadline = time.monotonic() + wait
    said = False
    while True:
        try:
            LabelStore.open(url)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise AnnotateError(f"rank {ranks.rank} of {ranks.world} waited {wait:.0f} s for rank 0 to create "
                                    f"the label store {url}, in vain: start rank 0 with the same arguments (or unset "
                                    f"RANK/WORLD_SIZE for a single process; {ENV_STORE_WAIT} sets the wait)") from None
            if not said:
                print(f"rank {ranks.rank} of {ranks.world}: waiting for rank 0 to create the label store {url} (no "
                      f"torch.distributed process group: RANK/WORLD_SIZE without MASTER_ADDR); giving up after "
                      f"{wait:.0f} s ({ENV_STORE_WAIT})", file=sys.stderr, flush=True)
                said = True
            time.sleep(0.5)


def annotator_attributes(*, loaded, size: int, resize: str, topk: int, batch_size: int, device: torch.device,
                         amp: bool, mean, std) -> dict:
    """The ``annotator`` attributes of the store: everything that changes the stored values.

    A resumed run must produce the same bits, so the batch size and the device type are included (they change
    float rounding); rank and world size are not (they do not).
    """
    return {
        "tool": "dali_relabel.annotate",
        "model": loaded.spec,
        "weights": loaded.weights,
        "weights_sha256": loaded.weights_sha256,
        "random_init": loaded.random_init,
        "size": size,
        "resize": resize,
        "interpolation": "linear, antialiased (DALI fn.resize)",
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "k": topk,
        "batch_size": batch_size,
        "device": device.type,
        "amp": amp,
        "conversion": "global average pooling removed, head applied at every location",
    }


def _batches_by_block(store, keys: np.ndarray, blocks: list[int], batch_size: int):
    """The file list of ``blocks`` with each block padded to a multiple of the batch size.

    Padding repeats the block's last image, so a batch never straddles two blocks and a block is always cut
    into the same batches (resumed and multi-rank runs compute every image in the same batch).

    Returns:
        (files, batches): the padded list of keys and, per batch, ``(block, first_offset, real_count)``.
    """
    files, batches = [], []
    for b in blocks:
        rows = store.block_rows(b)
        n = len(rows)
        for start in range(0, n, batch_size):
            real = min(batch_size, n - start)
            idx = [rows[start + i] for i in range(real)] + [rows[n - 1]] * (batch_size - real)
            files += [str(keys[r]) for r in idx]
            batches.append((b, start, real))
    return files, batches


def annotate(*, images: str, model: str, out: str, weights: str | None = None, random_init: bool = False,
             num_classes: int | None = None, size: int = 475, topk: int = 5, batch_size: int = 64,
             device: str | None = None, amp: bool = False, resize: str = "squash", block_size: int = 512,
             mean: tuple[float, float, float] | None = None, std: tuple[float, float, float] | None = None,
             rank: int | None = None, world_size: int | None = None, num_threads: int | None = None,
             prefetch: int = 2, progress: bool = True, scores_dtype: str = "float16") -> AnnotateReport:
    """Annotates every image under ``images`` into the label store ``out`` (this rank's blocks).

    Args:
        images: image tree (top-level folders are the classes: ``labels`` = folder index, as ImageFolder) or
            image list file (see :func:`list_image_tree`).
        model: ``torchvision:<name>``, ``timm:<name>`` or ``module.path:factory``.
        out: store path or fsspec URL; created, or resumed when it holds a store made with the same arguments.
        weights: local weights file (state dict or checkpoint); required unless ``random_init``.
        random_init: seeded random weights, for tests and benchmarks (recorded in the store).
        num_classes: classifier width when not the architecture's default.
        size: input side (the paper: 475 → 15×15 maps at stride 32).
        topk: classes kept per cell.
        batch_size: images per forward pass (also part of the store's identity, see
            :func:`annotator_attributes`).
        device: ``"cuda"`` or ``"cpu"``; default cuda when available.
        amp: autocast (float16 on CUDA, bfloat16 on CPU).
        resize: ``squash``, ``crop`` or ``pad`` (``dali_relabel.pipelines.annotate.RESIZE_POLICIES``).
        block_size: store rows per block (the unit of writing, resuming and sharing among ranks).
        mean, std: input normalization; default the model's (timm's config, else ImageNet's).
        rank, world_size: this process's share; default from the environment (torchrun), else 0 of 1.
        num_threads: DALI CPU threads.
        prefetch: batches DALI prepares ahead of the model.
        progress: show a tqdm bar (rank 0).
        scores_dtype: the store's scores, "float16" (default; logits clamped to its finite range) or "float32".

    Returns:
        What this process did (:class:`AnnotateReport`).

    Raises:
        AnnotateError, ModelError: unusable arguments, model, weights or existing store.
        FileNotFoundError: no images.
    """
    t0 = time.perf_counter()
    from ..pipelines.annotate import RESIZE_POLICIES

    if resize not in RESIZE_POLICIES:
        raise InvalidArgument("resize", resize, f"must be one of {', '.join(RESIZE_POLICIES)}", where="annotate")
    for name, value in (("size", size), ("topk", topk), ("batch_size", batch_size), ("block_size", block_size)):
        if not isinstance(value, int) or value < 1:
            raise InvalidArgument(name, value, "must be an integer >= 1", where="annotate")
    store_wait_seconds()  # a malformed wait fails now, not after the model is loaded
    ranks = _Ranks(rank, world_size)
    try:
        dev = _device(device, ranks)
        listing = list_image_tree(images)
        if is_inside(out, listing.root):
            raise InvalidArgument("out", out, f"is inside the image folder {listing.root}: the store would be listed "
                                  f"as a class folder and written among the images; choose a path outside it",
                                  where="annotate")
        loaded = load_model(model, weights=weights, random_init=random_init, num_classes=num_classes)
        mean = tuple(mean) if mean is not None else loaded.mean
        std = tuple(std) if std is not None else loaded.std
        net = loaded.module.to(dev)
        dense = to_dense(net)
        # Fixed probe input (CPU generator): checks the conversion on this device and gives the map size.
        probe = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(dev)
        height, width, classes_out = check_conversion(net, dense, probe)
        if topk > classes_out:
            raise InvalidArgument("topk", topk, f"exceeds the model's {classes_out} classes", where="annotate")
        if listing.labels and max(listing.labels) >= classes_out:
            # The store's labels are class indices of the annotator's classifier.
            raise AnnotateError(f"{images} has labels up to {max(listing.labels)} (class folders or list labels) but "
                                f"the model has {classes_out} classes: the store's labels must be model classes; give "
                                "a model with as many classes (num_classes) or images with fewer classes")
        if dev.type == "cuda":
            # Same algorithms every run (resumed blocks must match bit for bit); NHWC for tensor cores.
            torch.backends.cudnn.benchmark = False
            net.to(memory_format=torch.channels_last)
        attrs = annotator_attributes(loaded=loaded, size=size, resize=resize, topk=topk, batch_size=batch_size,
                                     device=dev, amp=amp, mean=mean, std=std)
        store = _open_store(out, dict(keys=listing.keys, labels=listing.labels, num_classes=classes_out,
                                      height=height, width=width, k=topk, annotator=attrs, block_size=block_size,
                                      scores_dtype=scores_dtype),
                            ranks)
        done = np.asarray(store.completed_blocks(), dtype=bool)
        if ranks.dist is not None:
            # One view of what is left (rank 0's, taken before anyone writes), dealt out evenly: a resumed
            # run keeps every rank busy.
            todo = ranks.broadcast([b for b in range(store.num_blocks) if not done[b]])
            pending = todo[ranks.rank::ranks.world]
        else:
            # Independent processes cannot share a view: a fixed owner per block keeps them disjoint.
            pending = [b for b in range(store.num_blocks) if b % ranks.world == ranks.rank and not done[b]]
        report = AnnotateReport(store=str(out), rank=ranks.rank, world_size=ranks.world, images=0, blocks=0,
                                skipped_blocks=int(done.sum()), setup_s=0.0, loop_s=0.0, complete=False)
        if pending:
            _run_blocks(store=store, listing=listing, dense=dense, blocks=pending, dev=dev, size=size,
                        resize=resize, mean=mean, std=std, topk=topk, batch_size=batch_size, amp=amp,
                        num_threads=num_threads, prefetch=prefetch, progress=progress and ranks.rank == 0,
                        ranks=ranks, report=report, t0=t0)
        else:
            report.setup_s = time.perf_counter() - t0
        ranks.barrier()   # with torchrun: every rank's blocks are written before completeness is judged
        report.complete = bool(np.all(store.completed_blocks()))
        return report
    finally:
        ranks.close()


def _run_blocks(*, store, listing, dense, blocks: list[int], dev: torch.device, size: int, resize: str, mean, std,
                topk: int, batch_size: int, amp: bool, num_threads: int | None, prefetch: int, progress: bool,
                ranks: _Ranks, report: AnnotateReport, t0: float) -> None:
    """Annotates ``blocks`` (all of this rank's unfinished ones) and writes each as soon as it is whole."""
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy
    from nvidia.dali.plugin.pytorch import DALIGenericIterator
    from tqdm import tqdm

    from ..pipelines.annotate import READER_NAME, annotate_pipeline

    files, batches = _batches_by_block(store, listing.keys, blocks, batch_size)
    on_gpu = dev.type == "cuda"
    if num_threads is None:
        num_threads = max(1, min(8, (os.cpu_count() or 1) // (torch.cuda.device_count() if on_gpu else 1)))
    pipe = annotate_pipeline(file_root=str(listing.root), files=files, positions=range(len(files)), size=size,
                             mean=mean, std=std, resize=resize, decoder="mixed" if on_gpu else "cpu",
                             batch_size=batch_size, num_threads=num_threads,
                             device_id=dev.index if on_gpu else None, prefetch_queue_depth=prefetch)

    def decode_failure(e: Exception, batch: int) -> Exception:
        # DALI fails a whole batch (and with prefetch, possibly one decoded ahead): find the culprits by key.
        return _decode_error(e, listing.root, files[batch * batch_size:(batch + 1 + prefetch) * batch_size],
                             store.url)

    pipe.build()
    report.setup_s = time.perf_counter() - t0
    t_loop = time.perf_counter()   # from here on DALI decodes: the first batches count as annotation time
    try:
        loader = DALIGenericIterator(pipe, ["images", "positions"], reader_name=READER_NAME,
                                     last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=False)
    except RuntimeError as e:
        raise decode_failure(e, 0) from e
    total = sum(real for _, _, real in batches)
    bar = tqdm(total=total, unit="img", disable=not progress, dynamic_ncols=True,
               desc=f"annotate (rank 0 of {ranks.world})" if ranks.world > 1 else "annotate")
    writer = concurrent.futures.ThreadPoolExecutor(max_workers=1)   # compression and I/O off the GPU's path
    writes: list[concurrent.futures.Future] = []
    buffers: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    autocast = torch.autocast(dev.type, dtype=amp_dtype(dev.type), enabled=amp)
    def finish(item) -> None:
        """Files one batch's top-k into its block's buffer; hands whole blocks to the writer."""
        i, values, indices, copied = item
        if copied is not None:
            copied.synchronize()   # the device-to-host copies of this batch are done
        block, start, real = batches[i]
        n = len(store.block_rows(block))
        if block not in buffers:
            shape = (n, store.height, store.width, topk)
            buffers[block] = (np.empty(shape, store.scores_numpy_dtype), np.empty(shape, store.class_dtype))
        scores, classes = buffers[block]
        values = values.numpy()
        if scores.dtype == np.float16:
            values = np.clip(values, -FLOAT16_MAX, FLOAT16_MAX)
        scores[start:start + real] = values
        classes[start:start + real] = indices.numpy()
        if start + real == n:   # the block is whole: write it in the background
            while len(writes) >= 2:
                writes.pop(0).result()
            writes.append(writer.submit(store.write_block, block, *buffers.pop(block)))
            report.blocks += 1
        report.images += real
        bar.update(real)

    previous = None
    try:
        for i in range(len(batches)):
            try:
                data = next(loader)
            except StopIteration:
                raise RuntimeError(f"the DALI reader stopped after {i} of {len(batches)} batches") from None
            except RuntimeError as e:
                raise decode_failure(e, i) from e
            x, positions = data[0]["images"], data[0]["positions"]
            expected = np.arange(i * batch_size, (i + 1) * batch_size)
            if not np.array_equal(positions.view(-1).cpu().numpy(), expected):
                raise RuntimeError(f"the DALI reader returned batch {i} out of order")  # never silently misfile
            if on_gpu:
                x = x.contiguous(memory_format=torch.channels_last)
            real = batches[i][2]
            with torch.inference_mode(), autocast:
                logits = dense.forward_hwc(x)                                   # [B, h, w, C] float32
                values, indices = torch.topk(logits[:real], topk, dim=-1, sorted=True)
                indices = indices.to(torch.int32)
            copied = None
            if on_gpu:
                # Asynchronous copies: the GPU goes on with the next batch while this one is filed.
                values, indices = values.to("cpu", non_blocking=True), indices.to("cpu", non_blocking=True)
                copied = torch.cuda.Event()
                copied.record()
            if previous is not None:
                finish(previous)
            previous = (i, values, indices, copied)
        if previous is not None:
            finish(previous)
        for w in writes:
            w.result()
        if buffers:
            raise RuntimeError(f"blocks {sorted(buffers)} were not read completely by the DALI reader")
    finally:
        writer.shutdown(wait=True)
        bar.close()
    report.loop_s = time.perf_counter() - t_loop


def _decode_error(error: Exception, root: str, candidates: list[str], url: str) -> Exception:
    """An AnnotateError naming the images among ``candidates`` that DALI cannot decode, else ``error``."""
    from ..ops.image_check import undecodable_images

    unique = list(dict.fromkeys(candidates))
    bad = undecodable_images([os.path.join(root, k) for k in unique], progress=False)
    if not bad:
        return error
    shown = "; ".join(f"{os.path.relpath(p, root)}: {reason}" for p, reason in bad[:10])
    return AnnotateError(f"DALI cannot decode {len(bad)} image(s) of {root}: {shown}. Replace them with decodable "
                         "images and rerun with the same arguments to resume (blocks already written are kept); "
                         f"removing them changes the image list and needs a new store. `dali-relabel verify {url} "
                         f"--images {root}` lists every undecodable image.")


__all__ = ["AnnotateError", "AnnotateReport", "annotate", "annotator_attributes", "list_image_tree"]
