"""The standing fault suite (issue #14): damaged objects of every kind, kills at random points, concurrent
creators/writers/materialisers, full and read-only disks, hostile keys and image folders, bad arguments, and a
fuzz of the operators. Each case states the behaviour required: nothing half-written presented as complete,
nothing a user owns overwritten, long jobs resumable to a byte-identical result, and every error one clear line
(from the command line) naming the file, block, key or option and saying what to do.

CPU only. Disk-full and read-only cases mount a small tmpfs (root with CAP_SYS_ADMIN) and skip with the reason
elsewhere. Kill points are drawn from a seeded generator ($DALI_RELABEL_FAULT_SEED, default 0), so a failure
reproduces.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image
from store_util import GEOMETRY, create_store, fill, keys_for, start_python, tree_bytes

from dali_relabel import LabelBank, LabelStore
from dali_relabel.cli import main
from dali_relabel.errors import (BankError, ImageFolderError, InvalidKeyError, StoreDamagedError, StoreExistsError,
                                 StoreMismatchError, StoreWriteError)
from dali_relabel.image_folder import ImageList, list_images
from dali_relabel.store import format as fmt
from dali_relabel.store.bank import bank_name
from dali_relabel.verify import verify_store

TESTS = Path(__file__).resolve().parent
SEED = int(os.environ.get("DALI_RELABEL_FAULT_SEED", "0"))


def child_env(**extra: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return env


def cli_process(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``dali-relabel ARGS`` in a fresh process (as a user runs it)."""
    return subprocess.run([sys.executable, "-m", "dali_relabel.cli", *args], capture_output=True, text=True,
                          env=env or child_env(), timeout=timeout)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``dali-relabel ARGS`` in this process (what main() prints and returns; the same code as the command),
    with ``env`` set meanwhile. Much faster than a process: no interpreter, torch or DALI start-up."""
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(args))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(list(args), rc, out.getvalue(), err.getvalue())


def assert_one_line_error(proc: subprocess.CompletedProcess, command: str, *fragments: str) -> str:
    """Exit status 2, no traceback, the error as the last line of stderr naming every fragment; returns it."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"dali-relabel {command}: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def write_images(root: Path, names: list[str], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        h, w = rng.integers(40, 90, 2)
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(path, format="JPEG")


def filled(url, n=100, block_size=16, **kw) -> LabelStore:
    store = create_store(url, n=n, block_size=block_size, **kw)
    fill(store)
    return LabelStore.open(url)


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` (skips the test where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True)


# ================================================================================================ creation
CREATOR = """
import sys, json
from store_util import barrier, create_store
from dali_relabel.errors import StoreMismatchError
url, me, parties, model = sys.argv[1], int(sys.argv[2]), int(sys.argv[4]), sys.argv[5]
barrier(sys.argv[3], me, parties)
try:
    store = create_store(url, n=200, block_size=16, exist_ok=True, annotator={"model": model})
    print(json.dumps({"ok": True, "model": store.annotator["model"]}))
except StoreMismatchError as e:
    print(json.dumps({"ok": False, "error": str(e)}))
"""


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_creators_with_different_settings_exactly_one_wins(tmp_path, round_):
    """Before: both creators could succeed, the store mixing their attributes and blocks. Now: one store, made by
    one of them; those with its settings join it, the others fail naming the difference."""
    url = tmp_path / "s.zarr"
    models = ["a", "b", "a", "b"]
    procs = [start_python(CREATOR, str(url), str(i), str(tmp_path / "barrier"), str(len(models)), m)
             for i, m in enumerate(models)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    winner = LabelStore.open(url).annotator["model"]
    for model, result in zip(models, results):
        if model == winner:
            assert result == {"ok": True, "model": winner}
        else:
            assert not result["ok"]
            assert "differs in annotator" in result["error"] and str(url) in result["error"]
    assert LabelStore.open(url).identity_problem() is None
    assert sorted(os.listdir(tmp_path)) == ["barrier", "s.zarr"]  # no temp directory left behind


WRITER = """
import sys
from store_util import barrier, create_store, fill
url, me, parties = sys.argv[1], int(sys.argv[2]), int(sys.argv[4])
barrier(sys.argv[3], me, parties)
store = create_store(url, n=200, block_size=16, exist_ok=True)
fill(store, blocks=range(me, store.num_blocks, parties))
"""


def test_concurrent_identical_creators_join_and_write_one_store(tmp_path):
    url = tmp_path / "s.zarr"
    procs = [start_python(WRITER, str(url), str(i), str(tmp_path / "barrier"), "3") for i in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    reference = filled(tmp_path / "ref.zarr", n=200, block_size=16)
    assert tree_bytes(url) == tree_bytes(tmp_path / "ref.zarr")
    assert verify_store(LabelStore.open(url), progress=False) == []
    assert LabelStore.open(url).content_hash() == reference.content_hash()


def test_create_refuses_a_file_and_a_foreign_directory_and_writes_nothing(tmp_path):
    """Before: LabelStore.create / import-naver / annotate wrote into any existing directory (overwriting a user's
    keys/c/0/0). Now: only an absent path, an empty directory or a store of this format is accepted."""
    user = tmp_path / "mine"
    (user / "keys" / "c" / "0").mkdir(parents=True)
    (user / "keys" / "c" / "0" / "0").write_text("my data")
    before = tree_bytes(user)
    with pytest.raises(StoreExistsError, match=rf"{user} is a directory that is not a label store \(it holds 'keys'\); "
                                               r"nothing was written: choose a new or empty directory"):
        create_store(user, exist_ok=True)
    assert tree_bytes(user) == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreExistsError, match=rf"{tmp_path / 'file'} is a file, not a directory"):
        create_store(tmp_path / "file", exist_ok=True)
    (tmp_path / "empty").mkdir()
    assert create_store(tmp_path / "empty", n=20).num_samples == 20  # an empty directory is fine
    # From the command line: one line, exit 2, nothing written.
    proc = cli("import-naver", "--maps", str(tmp_path), "--images", str(tmp_path), "--out", str(user), "--quiet")
    assert_one_line_error(proc, "import-naver", str(user))
    assert tree_bytes(user) == before


def test_store_inside_the_image_root_is_refused(tmp_path):
    write_images(tmp_path / "imgs", ["a/0.jpg", "b/1.jpg"])
    before = tree_bytes(tmp_path / "imgs")
    proc = cli("annotate", "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "imgs" / "labels.zarr"),
               "--model", "torchvision:resnet18", "--random-init", "--device", "cpu", "--no-progress")
    assert_one_line_error(proc, "annotate", f"--out {tmp_path / 'imgs' / 'labels.zarr'}: is inside the image folder")
    (tmp_path / "maps").mkdir()
    proc = cli("import-naver", "--maps", str(tmp_path / "maps"), "--images", str(tmp_path / "imgs"), "--out",
               str(tmp_path / "imgs" / "s.zarr"), "--quiet")
    assert_one_line_error(proc, "import-naver", "is inside the image folder")
    assert tree_bytes(tmp_path / "imgs") == before


def test_verify_catches_blocks_of_another_store(tmp_path):
    """The identity in every block marker: a block copied from a store with other settings (as two racing creators
    on an object store could mix them) is caught by verify even though its data and digest are intact."""
    a = filled(tmp_path / "a.zarr", n=48, block_size=16)
    b = filled(tmp_path / "b.zarr", n=48, block_size=16, annotator={"model": "other"})
    for name in ("scores", "classes", "block_digests"):
        key = a.object_key(name, 1)
        shutil.copy(tmp_path / "b.zarr" / key, tmp_path / "a.zarr" / key)
    problems = verify_store(LabelStore.open(tmp_path / "a.zarr"), progress=False)
    assert [(p.kind, p.block) for p in problems] == [("identity", 1)]
    assert f"this store's is {a.identity.hex()}" in problems[0].message and b.identity.hex() in problems[0].message
    # Attributes overwritten by a racing creator (object stores have no atomic rename): the store is refused.
    g = zarr.open_group(tmp_path / "a.zarr", mode="r+")
    g.attrs["annotator"] = {"model": "other"}
    with pytest.raises(StoreDamagedError, match="do not match its 'identity' attribute"):
        LabelStore.open(tmp_path / "a.zarr", mode="r+")
    with pytest.raises(StoreDamagedError, match="do not match its 'identity' attribute"):
        LabelStore.open(tmp_path / "a.zarr").materialize(tmp_path / "banks", progress=False)


def test_racing_remote_creators_are_told_apart(tmp_path):
    """memory:// (like s3://) has no atomic rename: the second creator with other settings still fails clearly."""
    url = f"memory://{tmp_path.name}/s.zarr"
    create_store(url, n=40)
    with pytest.raises(StoreMismatchError, match="differs in annotator"):
        create_store(url, n=40, exist_ok=True, annotator={"model": "b"})


def write_v1_store(path: Path, n: int = 40, block_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """A format version 1 store, written with zarr alone as docs/FORMAT.md (version 1) describes it."""
    g = zarr.open_group(path, mode="w", zarr_format=3)
    h, w, k, c = GEOMETRY["height"], GEOMETRY["width"], GEOMETRY["k"], GEOMETRY["num_classes"]
    from dali_relabel.testing.synthetic import synthetic_label_maps

    scores, classes = synthetic_label_maps(n, height=h, width=w, k=k, num_classes=c, seed=0)
    nb = -(-n // block_size)
    g.create_array("scores", shape=(n, h, w, k), chunks=(block_size, h, w, k), dtype="<f2", fill_value=np.nan,
                   **fmt.scores_codecs())[...] = scores
    g.create_array("classes", shape=(n, h, w, k), chunks=(block_size, h, w, k), dtype="<i2", fill_value=-1,
                   **fmt.classes_codecs(2))[...] = classes
    g.create_array("labels", shape=(n,), chunks=(n,), dtype="<i4", fill_value=-1)[...] = np.arange(n) % 4
    key_bytes = fmt.encode_keys(keys_for(n))
    g.create_array("keys", shape=key_bytes.shape, chunks=key_bytes.shape, dtype="u1", fill_value=0)[...] = key_bytes
    digests = g.create_array("block_digests", shape=(nb, 16), chunks=(1, 16), dtype="u1", fill_value=0,
                             compressors=None)
    for b in range(nb - 1):  # the last block left unwritten: to be resumed
        rows = slice(b * block_size, (b + 1) * block_size)
        digests[b] = np.frombuffer(fmt.block_digest(scores[rows], classes[rows]), np.uint8)
    g.attrs.put({"format": fmt.FORMAT_NAME, "format_version": 1, "num_samples": n, "height": h, "width": w, "k": k,
                 "num_classes": c, "values": "logits", "annotator": {"model": "synthetic", "input_size": 64},
                 "class_names": None, "block_size": block_size, "num_blocks": nb,
                 "completeness": {"array": "block_digests", "rule": fmt.COMPLETENESS_RULE_V1}})
    return scores, classes


def test_version_1_stores_stay_readable_and_resumable(tmp_path):
    scores, classes = write_v1_store(tmp_path / "v1.zarr")
    store = LabelStore.open(tmp_path / "v1.zarr", mode="r+")
    assert (store.format_version, store.identity) == (1, None)
    np.testing.assert_array_equal(store.completed_blocks(), [1, 1, 0])
    store.write_block(2, scores[32:], classes[32:])  # resumed by this version: a version 1 marker
    opened = LabelStore.open(tmp_path / "v1.zarr")
    assert opened.block_markers()[0].shape == (3, 16) and opened.is_complete
    np.testing.assert_array_equal(opened.read(slice(None))[0], scores)
    assert verify_store(opened, progress=False) == []
    bank = opened.materialize(tmp_path / "banks", progress=False)
    np.testing.assert_array_equal(bank.classes, classes)
    assert main(["info", str(tmp_path / "v1.zarr")]) == 0


# ================================================================================================ damaged stores
def _garble(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes({"garbage": b"\x00garbage\xff" * 3, "truncate": data[:len(data) // 2], "empty": b""}[how])


# (what is damaged, how, what reading a complete block / opening says, the object named)
DAMAGE = [
    ("zarr.json", "garbage", "cannot be read as zarr v3 group metadata", "zarr.json"),
    ("scores/zarr.json", "garbage", "the 'scores' array cannot be opened", "scores/zarr.json"),
    ("scores/c/1/0/0/0", "truncate", "block 1's 'scores' in", "scores/c/1/0/0/0"),
    ("classes/c/1/0/0/0", "garbage", "block 1's 'classes' in", "classes/c/1/0/0/0"),
    ("classes/c/1/0/0/0", "delete", "is missing although the block is marked complete", "classes/c/1/0/0/0"),
    ("scores/c/1/0/0/0", "delete", "is missing although the block is marked complete", "scores/c/1/0/0/0"),
    ("labels/c/0", "garbage", "the 'labels' array in", "labels/c/"),
    ("keys/c/0/0", "garbage", "the 'keys' array in", "keys/c/"),
    ("block_digests/c/1/0", "truncate", "marker object block_digests/c/1/0 cannot be decoded", "block_digests/c/1/0"),
]


@pytest.mark.parametrize("target,how,message,obj", DAMAGE, ids=[f"{t}-{h}" for t, h, _, _ in DAMAGE])
def test_damaged_store_objects_are_named(tmp_path, target, how, message, obj):
    """Before: NaN scores / class -1 from read(), 'cannot reshape array of size 2 into shape (1,16)' from verify,
    'error during blosc decompression: -1' from materialize, tracebacks from info. Now: the file or block is named
    with what to do, everywhere."""
    url = tmp_path / "s.zarr"
    filled(url, n=48, block_size=16)
    path = url / target
    if how == "delete":
        path.unlink()
    else:
        _garble(path, how)
    metadata = target.endswith("zarr.json")
    for command in (["info", str(url)], ["verify", "--quiet", str(url)]):
        proc = cli(*command)
        assert "Traceback" not in proc.stderr, proc.stderr
        if metadata:
            assert_one_line_error(proc, command[0], obj, "restore the store")
        elif command[0] == "verify":
            assert proc.returncode == 1 and message in proc.stdout and obj in proc.stdout, proc.stdout
    if metadata:
        return
    store = LabelStore.open(url)
    if target.startswith(("labels", "keys")):
        with pytest.raises(StoreDamagedError, match=message):
            store.labels if target.startswith("labels") else store.keys
        return
    if target.startswith("block_digests"):
        assert not store.completed_blocks()[1]  # a damaged marker: the block counts as not written
    else:
        with pytest.raises(StoreDamagedError, match=rf"\(object {obj}\)") as info:
            store.read(20)
        assert message in str(info.value) and "rerun the writer" in str(info.value)
        with pytest.raises(StoreDamagedError, match=obj):
            store.materialize(tmp_path / "banks", progress=False)
        assert not list((tmp_path / "banks").glob("[!.]*"))  # no bank of a damaged store
    # Repair: mark the block incomplete, rewrite it (what rerunning the writer does), and verify passes.
    proc = cli("verify", "--quiet", "--mark-incomplete", str(url))
    assert proc.returncode == 1 and "marked 1 block(s) incomplete (1)" in proc.stdout, proc.stdout
    resumed = create_store(url, n=48, block_size=16, exist_ok=True)
    fill(resumed, blocks=np.nonzero(~resumed.completed_blocks())[0])
    filled(tmp_path / "ref.zarr", n=48, block_size=16)
    assert tree_bytes(url) == tree_bytes(tmp_path / "ref.zarr")


def test_reading_a_complete_block_whose_chunk_is_missing(tmp_path):
    url = tmp_path / "s.zarr"
    store = filled(url, n=48, block_size=16)
    (url / "scores" / "c" / "2" / "0" / "0" / "0").unlink()
    with pytest.raises(StoreDamagedError, match=rf"block 2's 'scores' in {url} \(object scores/c/2/0/0/0\) is missing "
                                                r"although the block is marked complete: the store is damaged; mark "
                                                r"the "
                                                r"block incomplete .* and rerun the writer"):
        LabelStore.open(url).read(np.array([3, 40]))
    assert LabelStore.open(url).read(slice(0, 32))[0].shape == (32, 6, 5, 3)  # the other blocks still read
    assert store.completed_blocks().all()


def test_info_and_verify_on_missing_paths(tmp_path):
    assert_one_line_error(cli("info", str(tmp_path / "nope")), "info",
                          f"no label store at {tmp_path / 'nope'} (no such file or directory)")
    (tmp_path / "f").write_text("x")
    assert_one_line_error(cli("verify", str(tmp_path / "f")), "verify", "(a file, not a store directory)")


# ================================================================================================ banks
def test_bank_files_are_read_only_with_recorded_digests(tmp_path):
    bank = filled(tmp_path / "s.zarr").materialize(tmp_path / "banks", progress=False)
    for name in ("scores.npy", "classes.npy", "labels.npy", "keys.json", "bank.json"):
        assert (bank.path / name).stat().st_mode & 0o777 == 0o444, name
    files = bank.meta["files"]
    assert set(files) == {"scores.npy", "classes.npy", "labels.npy", "keys.json"}
    import hashlib

    for name, record in files.items():
        data = (bank.path / name).read_bytes()
        assert record["size"] == len(data) and record["blake2b"] == hashlib.blake2b(data, digest_size=16).hexdigest()


BANK_DAMAGE = {
    "truncated scores": lambda p: os.truncate(p / "scores.npy", (p / "scores.npy").stat().st_size - 100),
    "rewritten scores": lambda p: _flip_byte(p / "scores.npy", 5000),
    "classes deleted": lambda p: (p / "classes.npy").unlink(),
    "bank.json deleted": lambda p: (p / "bank.json").unlink(),
    "bank.json garbage": lambda p: _chmod_write(p / "bank.json", b"{garbage"),
    "keys.json garbage": lambda p: _chmod_write(p / "keys.json", b"[1, 2"),
}


def _flip_byte(path: Path, offset: int) -> None:
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _chmod_write(path: Path, data: bytes) -> None:
    path.chmod(0o644)
    path.write_bytes(data)


@pytest.mark.parametrize("damage", list(BANK_DAMAGE))
def test_a_damaged_bank_is_named_and_rebuilt(tmp_path, damage):
    """Before: 'mmap length is greater than file size'; a bank without bank.json could never be rebuilt
    ('Directory not empty'). Now: opening names the bank and the file; materialize rebuilds it (with a warning)."""
    store = filled(tmp_path / "s.zarr")
    bank = store.materialize(tmp_path / "banks", progress=False)
    reference = tree_bytes(bank.path)
    BANK_DAMAGE[damage](bank.path)
    with pytest.raises((BankError, FileNotFoundError), match=str(bank.path)):
        LabelBank.open(bank.path)
    proc = cli("verify", str(bank.path))
    assert proc.returncode in (1, 2) and str(bank.path) in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    with pytest.warns(UserWarning, match=rf"rebuilding the bank {bank.path}"):
        rebuilt = LabelStore.open(store.url).materialize(tmp_path / "banks", progress=False)
    assert rebuilt.path == bank.path
    got = tree_bytes(bank.path)
    data_files = {k: v for k, v in reference.items() if k != "bank.json"}  # bank.json records the build time
    assert {k: v for k, v in got.items() if k != "bank.json"} == data_files
    assert sorted(os.listdir(tmp_path / "banks")) == sorted([bank.path.name, f".{bank.path.name}.lock"])


def test_full_verify_catches_what_the_cheap_check_samples_past(tmp_path):
    """The check at open reads ~1 MiB (sizes + 64 sampled windows per file); a byte changed between windows of a
    large file is caught by `verify` (every byte), which is documented."""
    store = filled(tmp_path / "s.zarr", n=3000, block_size=512)
    bank = store.materialize(tmp_path / "banks", progress=False)
    size = (bank.path / "scores.npy").stat().st_size
    span = size - 4096
    starts = [round(i * span / 63) for i in range(64)]
    gap = next(s + 4096 + 10 for s, t in zip(starts, starts[1:]) if t - s > 4096 + 20)
    _flip_byte(bank.path / "scores.npy", gap)
    LabelBank.open(bank.path)  # sampled: not seen
    proc = cli("verify", str(bank.path))
    assert proc.returncode == 1 and "scores.npy does not match its recorded digest" in proc.stdout


def test_a_bank_file_shrunk_under_a_running_job_is_an_error_not_sigbus(tmp_path):
    """Before: SIGBUS killed the training process. Now: the per-epoch check (LabelBank.check_files, called by the
    loader at every epoch) raises naming the file; what happens between two checks is documented."""
    bank = filled(tmp_path / "s.zarr").materialize(tmp_path / "banks", progress=False)
    bank.check_files()
    scores = bank.path / "scores.npy"
    scores.chmod(0o644)
    os.truncate(scores, 200)
    with pytest.raises(BankError, match=rf"the bank file {scores} shrank from \d+ to 200 bytes while this process maps "
                                        r"it.*\(SIGBUS\)"):
        bank.check_files()


SHRINK_WHILE_MAPPED = """
import os, sys
import numpy as np
from nvidia.dali import fn, pipeline_def
import dali_relabel
dali_relabel.load_plugin()
bank = sys.argv[1]

@pipeline_def(batch_size=4, num_threads=2, device_id=None, prefetch_queue_depth=1, exec_async=False,
              exec_pipelined=False)
def pipe():
    return tuple(fn.relabel.lookup(row=fn.external_source(name="index"), bank=bank))

p = pipe()
p.build()
rows = [0, 1, 2999, 2998]
p.feed_input("index", [np.array([r], np.int32) for r in rows])
p.run()
os.chmod(bank + "/scores.npy", 0o644)
os.truncate(bank + "/scores.npy", 128)   # in place: the mapping now runs past the end of the file
p.feed_input("index", [np.array([r], np.int32) for r in rows])
p.run()
print("not reached")
"""


def test_a_bank_shrunk_under_a_running_pipeline_dies_naming_the_file(tmp_path):
    """What the per-epoch check cannot catch (DALI reads the bank in its own threads, ahead of the iterator): the
    process still dies of SIGBUS, as the kernel decides, but says which file and what to do."""
    bank = filled(tmp_path / "s.zarr", n=3000, block_size=512).materialize(tmp_path / "banks", progress=False)
    proc = subprocess.run([sys.executable, "-c", SHRINK_WHILE_MAPPED, str(bank.path)], capture_output=True, text=True,
                          env=child_env(), timeout=300)
    assert proc.returncode == -signal.SIGBUS, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert (f"dali_relabel: bus error (SIGBUS) reading the memory-mapped bank file {bank.path}/scores.npy: the file "
            f"shrank while this process maps it") in proc.stderr
    assert "LabelStore.materialize() checks the bank and rebuilds it" in proc.stderr


def test_loader_checks_the_bank_at_every_epoch(tmp_path, monkeypatch):
    """The wiring of the per-epoch check. (Truncating the bank for real here would race with DALI's prefetching,
    which reads the bank as soon as an epoch starts: that case is the SIGBUS test below.)"""
    from dali_relabel.loader import ReLabelLoader
    from dali_relabel.testing.demo_dataset import build_demo_dataset

    demo = build_demo_dataset(tmp_path / "demo", num_images=8, height=64, width=64, progress=False)
    loader = ReLabelLoader(demo.images, demo.labels, 4, device="cpu", num_threads=1, seed=0,
                           bank_dir=tmp_path / "banks")
    checks = []
    monkeypatch.setattr(LabelBank, "check_files", lambda self: checks.append(self.path))
    assert sum(1 for _ in loader) == 2 and sum(1 for _ in loader) == 2
    assert checks == [loader.bank.path] * 2

    def shrunk(self):
        raise BankError(f"the bank file {self.path / 'scores.npy'} shrank", path=self.path)

    monkeypatch.setattr(LabelBank, "check_files", shrunk)
    with pytest.raises(BankError, match="shrank"):
        next(iter(loader))


def test_stale_banks_of_the_same_store_are_removed(tmp_path):
    """Before: every rewrite of a store left its old bank in /dev/shm. Now: a store's banks of other contents go
    when its new bank is materialized; other stores' banks stay."""
    store = filled(tmp_path / "s.zarr")
    other = filled(tmp_path / "o.zarr", n=30)
    old = store.materialize(tmp_path / "banks", progress=False)
    before = store.read(slice(None))[0]
    kept = other.materialize(tmp_path / "banks", progress=False)
    fill(LabelStore.open(store.url, mode="r+"), blocks=[3], seed=9)  # the store rewritten: new content
    new = LabelStore.open(store.url).materialize(tmp_path / "banks", progress=False)
    assert new.path != old.path and not old.path.exists() and kept.path.exists()
    np.testing.assert_array_equal(old.scores, before)  # a process mapping the old bank still reads it


def test_bank_directory_without_bank_json_is_replaced(tmp_path):
    """A bank directory whose bank.json was deleted used to block every rebuild ('Directory not empty')."""
    store = filled(tmp_path / "s.zarr")
    key = bank_name(store)
    (tmp_path / "banks" / key).mkdir(parents=True)
    (tmp_path / "banks" / key / "scores.npy").write_bytes(b"leftover")
    bank = store.materialize(tmp_path / "banks", progress=False)
    np.testing.assert_array_equal(bank.scores, store.read(slice(None))[0])


# ================================================================================================ folders, keys
def test_symlink_loop_lists_each_image_once_and_reports_it(tmp_path):
    """Before: a loop turned 6 images into 246 samples, silently. Now: 6 samples, the links reported."""
    root = tmp_path / "imgs"
    write_images(root, ["a/0.jpg", "a/1.jpg", "a/sub/2.jpg", "b/3.jpg", "b/4.jpg", "b/5.jpg"])
    (root / "a" / "sub" / "loop").symlink_to("../..")        # a cycle back to the root
    (root / "b" / "again").symlink_to("../a")                 # a second path to a folder
    (root / "b" / "broken.jpg").symlink_to("/nonexistent.jpg")
    (root / "b" / "alias.jpg").symlink_to("3.jpg")           # a link to a file: followed
    listing = ImageList.from_folder(root)
    assert listing.keys == ["a/0.jpg", "a/1.jpg", "a/sub/2.jpg", "b/3.jpg", "b/4.jpg", "b/5.jpg", "b/alias.jpg"]
    assert listing.skipped_links == ["a/sub/loop: skipped, a link back to a folder above it (a cycle)",
                                     "b/again: skipped, a second path to a folder listed already",
                                     "b/broken.jpg: skipped, a broken symbolic link"]
    skipped: list[str] = []
    assert len(list_images(root, skipped)) == 7 and len(skipped) == 3
    store = create_store(tmp_path / "s.zarr", n=7, keys=listing.keys, labels=None)
    problems = verify_store(store, images_dir=root, decode=False, progress=False)
    assert [p.kind for p in problems if p.kind == "skipped-link"] == ["skipped-link"] * 3


@pytest.mark.parametrize("key,problem", [
    ("../secret.jpg", "has an empty, '.' or '..' component"),
    ("a/../../b.jpg", "has an empty, '.' or '..' component"),
    ("a//b.jpg", "has an empty, '.' or '..' component"),
    ("./a.jpg", "has an empty, '.' or '..' component"),
    ("/etc/passwd", "is an absolute path"),
    ("a\nb.jpg", "contains a control character"),
    ("a\rb.jpg", "contains a control character"),
    ("a\\b.jpg", "contains a backslash"),
    ("a\udcff.jpg", "is not valid UTF-8"),
])
def test_keys_that_could_leave_the_root_are_rejected_at_write_time(tmp_path, key, problem):
    with pytest.raises(InvalidKeyError, match=rf"keys\[1\] = .* {problem}"):
        LabelStore.create(tmp_path / "s.zarr", keys=["ok.jpg", key], **GEOMETRY)
    assert not (tmp_path / "s.zarr").exists()


def test_a_stored_key_outside_the_root_is_never_resolved(tmp_path):
    """A store written by another tool may hold such a key: verify reports it, show refuses it."""
    (tmp_path / "secret.jpg").write_bytes(b"not for you")
    url = tmp_path / "s.zarr"
    filled(url, n=16, block_size=16)
    g = zarr.open_group(url, mode="r+")
    raw = g["keys"][...]
    raw[0] = 0
    raw[0, :13] = np.frombuffer(b"../secret.jpg", np.uint8)
    g["keys"][...] = raw
    problems = verify_store(LabelStore.open(url), images_dir=tmp_path / "imgs", decode=False, progress=False)
    assert any(p.kind == "bad-key" and "'../secret.jpg'" in p.key for p in problems)
    proc = cli("show", str(url), "--images", str(tmp_path / "imgs"), "--key", "../secret.jpg", "-o",
               str(tmp_path / "x.png"))
    assert_one_line_error(proc, "show", "key '../secret.jpg' has an empty, '.' or '..' component")


def test_other_entry_points_list_and_resolve_safely(tmp_path):
    """The same families elsewhere: a symlink loop in the naver maps tree (was an endless os.walk), a crop-stats
    box key outside the image folder, a bank directory given where a store is expected, --workers 0."""
    root = tmp_path / "release"
    make_release(root, n=6)
    (root / "maps" / "n00" / "loop").symlink_to("..")
    with pytest.warns(UserWarning, match=r"1 symbolic link\(s\) under .*maps not followed: n00/loop: skipped, a link "
                                         r"back to a folder above it"):
        from dali_relabel.store.naver_import import import_naver

        report = import_naver(root / "maps", root / "train", tmp_path / "s.zarr", num_classes=3, block_size=4,
                              workers=1, progress=False)
    assert report.imported == 6
    (tmp_path / "boxes.json").write_text(json.dumps({"../escape.jpg": [[0, 0, 1, 1]]}))
    proc = cli("crop-stats", "--images", str(root / "train"), "--boxes", str(tmp_path / "boxes.json"))
    assert_one_line_error(proc, "crop-stats", "the key '../escape.jpg' has an empty, '.' or '..' component")
    (tmp_path / "boxes.json").write_text("{not json")
    assert_one_line_error(cli("crop-stats", "--images", str(root / "train"), "--boxes", str(tmp_path / "boxes.json")),
                          "crop-stats", f"{tmp_path / 'boxes.json'}: not valid JSON")
    bank = LabelStore.open(tmp_path / "s.zarr").materialize(tmp_path / "banks", progress=False)
    assert_one_line_error(cli("info", str(bank.path)), "info", "(a serving bank directory, made from a store")
    assert cli("verify", str(bank.path)).returncode == 0  # verify takes a bank directory too
    assert_one_line_error(cli("import-naver", "--maps", str(root / "maps"), "--images", str(root / "train"), "--out",
                              str(tmp_path / "t.zarr"), "--workers", "0"), "import-naver",
                          "--workers 0: must be an integer >= 1")


def test_a_newline_in_an_image_file_name_is_named(tmp_path):
    """Before: a DALI assert about an internal file list. Now: the file is named."""
    root = tmp_path / "imgs"
    write_images(root, ["a/0.jpg", "a/bad\nname.jpg", "b/1.jpg"])
    with pytest.raises(ImageFolderError, match=r"the image file name 'a/bad\\nname.jpg' contains a control "
                                               r"character .* rename it"):
        ImageList.from_folder(root)
    proc = cli("annotate", "--images", str(root), "--out", str(tmp_path / "s.zarr"), "--model",
               "torchvision:resnet18", "--random-init", "--device", "cpu", "--no-progress")
    assert_one_line_error(proc, "annotate", "'a/bad\\nname.jpg' contains a control character")
    (tmp_path / "list.txt").write_text("a/0.jpg 0\n../escape.jpg 1\n")
    with pytest.raises(ImageFolderError, match=r"list.txt, line 2: the image path '../escape.jpg' has an empty"):
        ImageList.from_file_list(tmp_path / "list.txt")


# ================================================================================================ command line
def test_bad_arguments_are_one_line_naming_the_option(tmp_path):
    write_images(tmp_path / "imgs", ["a/0.jpg", "b/1.jpg"])
    (tmp_path / "maps").mkdir()
    common = ["--images", str(tmp_path / "imgs")]
    proc = cli("import-naver", "--maps", str(tmp_path / "maps"), *common, "--out", str(tmp_path / "s.zarr"),
               "--block-size", "0")
    line = assert_one_line_error(proc, "import-naver", "--block-size 0: must be an integer >= 1")
    assert "blocks written so far are kept" not in proc.stderr and "resume" not in line  # nothing was written
    proc = cli("annotate", *common, "--out", str(tmp_path / "s.zarr"), "--model", "torchvision:resnet18",
               "--random-init", "--block-size", "0")
    assert_one_line_error(proc, "annotate", "--block-size 0: must be an integer >= 1")
    proc = cli("annotate", *common, "--out", str(tmp_path / "s.zarr"), "--model", "os:system", "--random-init",
               "--device", "cpu")
    assert_one_line_error(proc, "annotate", "the model factory 'os:system' failed (TypeError")
    (tmp_path / "file").write_text("x")
    proc = cli("annotate", *common, "--out", str(tmp_path / "file"), "--model", "torchvision:resnet18",
               "--random-init", "--device", "cpu", "--size", "32", "--no-progress")
    assert_one_line_error(proc, "annotate", f"{tmp_path / 'file'} is a file, not a directory")
    proc = cli("annotate", *common, "--out", str(tmp_path / "s.zarr"), "--model", "torchvision:resnet18",
               "--random-init", env={"RANK": "abc"})
    assert_one_line_error(proc, "annotate", "environment variable RANK='abc' is not an integer")
    proc = cli("demo", "--images", str(tmp_path / "imgs"))
    assert_one_line_error(proc, "demo", "give both --images and --labels")
    assert not (tmp_path / "s.zarr").exists()


def test_debug_shows_the_traceback(tmp_path):
    proc = cli_process("info", str(tmp_path / "nope"), "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "StoreNotFoundError" in proc.stderr


def test_version_and_help_on_every_option(capsys):
    from dali_relabel import __version__
    from dali_relabel.cli import make_parser

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"dali-relabel {__version__}"
    parser = make_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in [("dali-relabel", parser), *sub.choices.items()]:
        for action in p._actions:
            if action.dest in ("help", "command"):
                continue
            assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}: no help"


def test_output_into_a_closed_pipe_is_quiet(tmp_path):
    store = filled(tmp_path / "s.zarr", n=20)
    proc = subprocess.run(f"{sys.executable} -m dali_relabel.cli info --json {store.url} | head -1", shell=True,
                          capture_output=True, text=True, env=child_env())
    assert proc.stdout == "{\n" and proc.stderr == ""


def test_a_rank_waiting_for_rank_0_says_so_and_when_it_gives_up(tmp_path):
    """Before: RANK=1 WORLD_SIZE=2 without a process group waited 600 s in silence."""
    write_images(tmp_path / "imgs", ["a/0.jpg", "b/1.jpg"])
    proc = cli("annotate", "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "s.zarr"), "--model",
               "torchvision:resnet18", "--random-init", "--device", "cpu", "--size", "32", "--no-progress",
               env={"RANK": "1", "WORLD_SIZE": "2", "DALI_RELABEL_STORE_WAIT_S": "1"})
    assert (f"rank 1 of 2: waiting for rank 0 to create the label store {tmp_path / 's.zarr'} (no torch.distributed "
            f"process group: RANK/WORLD_SIZE without MASTER_ADDR); giving up after 1 s") in proc.stderr
    assert_one_line_error(proc, "annotate", "rank 1 of 2 waited 1 s for rank 0", "start rank 0")


def test_loader_names_a_store_inside_the_image_root_and_duplicate_keys(tmp_path):
    """Before: both were reported as 'the store's class order differs'."""
    from dali_relabel.loader import ReLabelLoader

    write_images(tmp_path / "imgs", ["a/0.jpg", "b/1.jpg"])
    store = create_store(tmp_path / "imgs" / "labels.zarr", n=2, keys=["a/0.jpg", "b/1.jpg"], labels=[0, 1],
                         block_size=2, num_classes=2, k=2)
    fill(store)
    with pytest.raises(ValueError, match="is inside the image folder .* counts it as a class folder"):
        ReLabelLoader(tmp_path / "imgs", store.url, 2, device="cpu")
    shutil.move(tmp_path / "imgs" / "labels.zarr", tmp_path / "labels.zarr")
    g = zarr.open_group(tmp_path / "labels.zarr", mode="r+")
    g["keys"][1] = g["keys"][0]  # a foreign writer's duplicate key
    with pytest.raises(ValueError, match=r"holds 1 duplicate key\(s\)"):
        ReLabelLoader(tmp_path / "imgs", tmp_path / "labels.zarr", 2, device="cpu")


# ============================================================================================ full / read-only disks
def test_disk_full_names_the_path_and_the_store_resumes(tmp_path):
    """Before: 'No space left on device' without a path. Now: the store (and the object) named, blocks kept, and
    after space is freed the resumed store equals an uninterrupted one byte for byte."""
    reference = filled(tmp_path / "ref.zarr", n=400, block_size=16)
    with tmpfs(tmp_path / "small", "64k") as mnt:
        url = mnt / "s.zarr"
        store = create_store(url, n=400, block_size=16)
        with pytest.raises(StoreWriteError, match=rf"cannot write block \d+ of the label store {url}: no space left on "
                                                  rf"device \({url}.*free space .*rerun the same command to resume"):
            fill(store)
        done = LabelStore.open(url).completed_blocks()
        assert 0 < done.sum() < len(done)
        remount(mnt, "size=4m")
        resumed = create_store(url, n=400, block_size=16, exist_ok=True)
        fill(resumed, blocks=np.nonzero(~resumed.completed_blocks())[0])
        assert tree_bytes(url) == tree_bytes(Path(reference.url))


def test_disk_full_while_building_a_bank_names_it_and_leaves_nothing(tmp_path):
    store = filled(tmp_path / "s.zarr", n=600, block_size=64)
    with tmpfs(tmp_path / "small", "64k") as mnt:
        with pytest.raises(StoreWriteError, match=rf"cannot build the bank {mnt}/{bank_name(store)} of .*: no "
                                                  rf"space left on device .*DALI_RELABEL_BANK_DIR"):
            store.materialize(mnt, progress=False)
        assert [p.name for p in mnt.iterdir()] == [f".{bank_name(store)}.lock"]  # no partial bank
        remount(mnt, "size=4m")
        bank = store.materialize(mnt, progress=False)
        np.testing.assert_array_equal(bank.scores, store.read(slice(None))[0])


def test_disk_full_from_the_command_line_is_one_line(tmp_path):
    root = tmp_path / "release"
    make_release(root, n=60)
    with tmpfs(tmp_path / "small", "48k") as mnt:
        proc = cli("import-naver", "--maps", str(root / "maps"), "--images", str(root / "train"), "--out",
                   str(mnt / "s.zarr"), "--block-size", "4", "--workers", "1", "--quiet")
        assert_one_line_error(proc, "import-naver", "no space left on device", str(mnt / "s.zarr"))


def test_an_empty_mount_point_as_the_store_path(tmp_path):
    """A fresh volume mounted where the store goes cannot be renamed onto: it is filled in place, and a creator
    with other settings still fails."""
    with tmpfs(tmp_path / "vol", "4m") as mnt:
        fill(create_store(mnt, n=40))
        assert verify_store(LabelStore.open(mnt), progress=False) == []
        assert create_store(mnt, n=40, exist_ok=True).is_complete
        with pytest.raises(StoreMismatchError, match="differs in annotator"):
            create_store(mnt, n=40, exist_ok=True, annotator={"model": "other"})
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"cache_dir=.*file': is a file, not a directory of banks"):
        filled(tmp_path / "s.zarr", n=20).materialize(tmp_path / "file", progress=False)


def test_read_only_store(tmp_path):
    with tmpfs(tmp_path / "ro", "4m") as mnt:
        url = mnt / "s.zarr"
        fill(create_store(url, n=64, block_size=16), blocks=[0, 1])
        remount(mnt, "ro")
        store = LabelStore.open(url, mode="r+")
        with pytest.raises(StoreWriteError, match=rf"cannot write block 2 of the label store {url}: read-only file "
                                                  r"system .*choose a writable location"):
            fill(store, blocks=[2])
        assert cli("info", str(url)).returncode == 0  # reading needs no write
        with pytest.raises(StoreWriteError, match="read-only file system"):
            create_store(mnt / "new.zarr", n=8)


# ================================================================================================ kills and resumes
def make_release(root: Path, n: int = 24, num_classes: int = 3, k: int = 3, h: int = 4, w: int = 4) -> None:
    """An official-release-like tree: maps/<class>/<stem>.pt ([2, K, H, W] float32) for train/<class>/<stem>.JPEG."""
    import torch

    rng = np.random.default_rng(0)
    for i in range(n):
        cls = f"n{i % num_classes:02d}"
        (root / "train" / cls).mkdir(parents=True, exist_ok=True)
        (root / "train" / cls / f"{cls}_{i}.JPEG").write_bytes(b"jpeg")
        scores = -np.sort(-rng.normal(size=(h, w, k)), axis=-1)
        classes = np.stack([rng.permutation(num_classes)[:k] for _ in range(h * w)]).reshape(h, w, k)
        t = torch.from_numpy(np.stack([scores.transpose(2, 0, 1), classes.transpose(2, 0, 1)]).astype(np.float32))
        (root / "maps" / cls).mkdir(parents=True, exist_ok=True)
        torch.save(t, root / "maps" / cls / f"{cls}_{i}.pt")


# A child that runs `code` but dies (os._exit) at its N-th write of a file: with the file just opened for writing
# (created, empty: mid-object) or just before a rename (written, not yet in place). Every write of zarr objects,
# bank files and temp directories goes through these, so N drawn at random is a random point of the sequence.
DIE_AT_WRITE = """
import io, os, sys
limit = int(os.environ["DIE_AT"])
count = [0]
def tick():
    count[0] += 1
    if count[0] >= limit:
        os._exit(99)
real_open, real_rename, real_replace = io.open, os.rename, os.replace
def open_(file, mode="r", *a, **k):
    f = real_open(file, mode, *a, **k)
    if any(c in mode for c in "wax+"):
        tick()
    return f
def rename(*a, **k):
    tick()
    return real_rename(*a, **k)
def replace(*a, **k):
    tick()
    return real_replace(*a, **k)
io.open, os.rename, os.replace = open_, rename, replace
import builtins
builtins.open = open_
"""


def run_dying(code: str, args: list[str], die_at: int) -> subprocess.CompletedProcess:
    env = child_env(DIE_AT=str(die_at))
    return subprocess.run([sys.executable, "-c", DIE_AT_WRITE + code, *args], capture_output=True, text=True, env=env,
                          timeout=300)


def age_leftovers(root: Path, seconds: float = 3600) -> int:
    """Backdates the temp objects a killed writer left (zarr's '*.partial'): as if the resume came later."""
    old = time.time() - seconds
    found = list(root.rglob("*.partial"))
    for p in found:
        os.utime(p, (old, old))
    return len(found)


IMPORTER = """
from dali_relabel.store.naver_import import import_naver
import_naver(sys.argv[1] + "/maps", sys.argv[1] + "/train", sys.argv[2], num_classes=3, block_size=4, workers=1,
             progress=False)
"""


def test_import_naver_killed_at_random_points_resumes_byte_identical(tmp_path):
    from dali_relabel.store.naver_import import import_naver

    make_release(tmp_path / "release", n=22)
    import_naver(tmp_path / "release" / "maps", tmp_path / "release" / "train", tmp_path / "ref.zarr", num_classes=3,
                 block_size=4, workers=1, progress=False)
    rng = random.Random(SEED)
    out = tmp_path / "s.zarr"
    deaths = 0
    for die_at in sorted(rng.sample(range(1, 40), 5)):
        proc = run_dying(IMPORTER, [str(tmp_path / "release"), str(out)], die_at)
        assert proc.returncode in (0, 99), proc.stderr
        deaths += proc.returncode == 99
        if out.exists() and (out / "zarr.json").exists():  # whatever is there is a store, never a half one
            LabelStore.open(out)
    assert deaths >= 3
    age_leftovers(out)  # a resumed writer deletes the temp objects of killed writers (old ones: no live writer's)
    import_naver(tmp_path / "release" / "maps", tmp_path / "release" / "train", out, num_classes=3, block_size=4,
                 workers=1, progress=False)
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref.zarr")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".s.zarr.tmp-")]  # temp dirs of the dead removed


MATERIALIZER = """
from dali_relabel import LabelStore
LabelStore.open(sys.argv[1]).materialize(sys.argv[2], progress=False)
"""


def test_materialize_killed_at_random_points_never_shows_a_partial_bank(tmp_path):
    store = filled(tmp_path / "s.zarr", n=300, block_size=32)
    reference = store.materialize(tmp_path / "ref", progress=False)
    want = {k: v for k, v in tree_bytes(reference.path).items() if k != "bank.json"}
    rng = random.Random(SEED + 1)
    banks = tmp_path / "banks"
    for die_at in sorted(rng.sample(range(1, 14), 5)):
        proc = run_dying(MATERIALIZER, [str(store.url), str(banks)], die_at)
        assert proc.returncode in (0, 99), proc.stderr
        visible = [p for p in banks.iterdir() if not p.name.startswith(".")] if banks.exists() else []
        for bank_dir in visible:  # a bank directory that exists is complete
            LabelBank.open(bank_dir, check="full")
    bank = LabelStore.open(store.url).materialize(banks, progress=False)
    assert {k: v for k, v in tree_bytes(bank.path).items() if k != "bank.json"} == want
    assert sorted(p.name for p in banks.iterdir()) == sorted([bank.path.name, f".{bank.path.name}.lock"])


ANNOTATE_ARGS = ["--model", "annotate_models:slow_resnet18", "--random-init", "--size", "64", "--topk", "5",
                 "--batch-size", "3", "--block-size", "4", "--device", "cpu", "--no-progress"]


@pytest.mark.usefixtures("one_torch_thread")  # the children's arithmetic (OMP_NUM_THREADS=1) in this process
def test_annotate_killed_at_random_points_resumes_byte_identical(tmp_path):
    """SIGKILL at random moments (before the store exists, mid-creation, between and during blocks); the resumed
    store equals an uninterrupted run's byte for byte."""
    from annotate_models import SLEEP_ENV

    images = tmp_path / "imgs"
    write_images(images, [f"{'ab'[i % 2]}/{i}.jpg" for i in range(14)])
    ref = cli("annotate", "--images", str(images), "--out", str(tmp_path / "ref.zarr"), *ANNOTATE_ARGS)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "s.zarr"
    rng = random.Random(SEED + 2)
    cmd = [sys.executable, "-m", "dali_relabel.cli", "annotate", "--images", str(images), "--out", str(out),
           *ANNOTATE_ARGS]
    def blocks_done() -> int:
        try:
            return int(LabelStore.open(out).completed_blocks().sum())
        except (FileNotFoundError, ValueError):
            return 0

    kills = 0
    for _ in range(5):  # until two runs were killed: the kill point follows progress, not the machine's speed
        target = blocks_done() + rng.randrange(0, 2)  # 0: before the next block (start-up, creation, mid-block)
        proc = subprocess.Popen(cmd, env=child_env(**{SLEEP_ENV: "0.3"}), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and blocks_done() < target and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        if kills == 2 or blocks_done() == 4:
            break
    age_leftovers(out)
    resumed = cli("annotate", "--images", str(images), "--out", str(out), *ANNOTATE_ARGS)
    assert resumed.returncode == 0, resumed.stderr
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref.zarr")
    assert kills >= 1


# ================================================================================================ concurrency
MATERIALIZE_AT_ONCE = """
import sys
from store_util import barrier
from dali_relabel import LabelStore
store = LabelStore.open(sys.argv[1])
barrier(sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
bank = store.materialize(sys.argv[2], progress=False)
print(bank.path)
"""


def test_concurrent_materialisers_one_of_them_killed(tmp_path):
    store = filled(tmp_path / "s.zarr", n=4000, block_size=256)
    procs = [start_python(MATERIALIZE_AT_ONCE, str(store.url), str(tmp_path / "banks"), str(tmp_path / "barrier"),
                          str(i), "4") for i in range(4)]
    deadline = time.monotonic() + 120
    while len(list((tmp_path / "barrier").glob("*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.Random(SEED + 3).uniform(0.0, 1.0))
    procs[0].kill()  # perhaps the builder, perhaps mid-build, perhaps waiting
    paths = set()
    for p in procs[1:]:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        paths.add(out.strip())
    procs[0].wait()
    assert len(paths) == 1
    bank = LabelBank.open(paths.pop(), check="full")
    np.testing.assert_array_equal(bank.scores, store.read(slice(None))[0])


# ================================================================================================ fuzz
@pytest.mark.parametrize("label_type", ["global_multi", "global_single"])
def test_global_targets_ignore_transpose_box_on_non_square_maps(label_pool_runner, label_type):
    """Found by the fuzz: tests/reference.py applied the official (transposed, W-scaled) box geometry to global types,
    which the operator's definition pools over the whole map whatever transpose_box says; they differed on
    non-square maps only. The target is the (softmax or one-hot of the) mean over cells of the dense map."""
    from reference import random_label_map, slow_label_pool

    rng = np.random.default_rng(5)
    samples = [random_label_map(rng, h, w, 3, 7) for h, w in ((3, 5), (5, 2), (1, 9), (4, 4))]
    start, end = np.zeros(2, np.float32), np.ones(2, np.float32)
    out = label_pool_runner(num_classes=7, label_type=label_type, transpose_box=True)(
        [s for s, _ in samples], [c for _, c in samples], [start] * 4, [end] * 4)
    for got, (s, c) in zip(out, samples):
        dense = np.zeros((7,) + s.shape[:2])
        for j in range(s.shape[2]):
            for y in range(s.shape[0]):
                for x in range(s.shape[1]):
                    dense[c[y, x, j], y, x] += float(s[y, x, j])
        z = dense.mean(axis=(1, 2))
        e = np.exp(z - z.max())
        want = np.eye(7)[np.argmax(z)] if label_type.endswith("single") else e / e.sum()
        np.testing.assert_allclose(got, want, atol=1e-6)
        np.testing.assert_allclose(slow_label_pool(s, c, start, end, 7, transpose_box=True, label_type=label_type),
                                   want, atol=1e-9)



def test_fuzz_label_pool_and_lookup(tmp_path):
    """10,000 random valid label_pool samples (shapes 1..9 x 1..9 x K, float16/32 scores, int16/32 classes, random,
    tiny, full and border boxes, every label_type, temperatures, transpose_box, logits) equal the float64 reference;
    random invalid ones (NaN/inf scores, classes out of range, bad boxes, shape mismatches, empty and 2-D maps) and
    out-of-range lookups fail naming the operator and the sample; lookups equal numpy indexing. In a child process:
    a crash fails this test."""
    proc = subprocess.run([sys.executable, str(TESTS / "fuzz_ops.py"), "--cases", "10000", "--invalid", "150",
                           "--lookup", "1000", "--seed", str(SEED), "--bank-dir", str(tmp_path)],
                          capture_output=True, text=True, env=child_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["num_failures"] == 0, summary["failures"]
    assert summary["counts"]["label_pool_valid"] >= 10000 and summary["counts"]["lookup"] >= 1000
