"""The fault suite's standards (tests/test_faults.py) on the shard entry points: damaged, truncated and compressed
tars, damaged index files and manifests, samples without a map, shard paths that do not exist, output directories
that are taken. Each case: the loaders raise a typed error naming the tar, index or sample and saying what to do;
the command line prints it as one line (exit 2), or ``verify --shards`` lists it as a problem (exit 1) and checks the
other shards; nothing a user owns is changed."""

from __future__ import annotations

import gzip
import shutil
import tarfile

import pytest
from loader_util import small_demo  # noqa: F401 (fixture)
from shard_util import MAX_COUNT, demo_shards, shard_loader  # noqa: F401 (fixtures)

from dali_relabel.cli import main
from dali_relabel.errors import InvalidArgument, ShardError, ShardsNotFoundError
from dali_relabel.shards import ShardSet, index_path_for, read_index, scan_tar
from dali_relabel.shards.writer import MANIFEST, write_shards


@pytest.fixture(autouse=True)
def own_index_cache(tmp_path, monkeypatch):
    """Indexes built for tars without one go to this test's cache (a damaged tar must not find a cached index)."""
    monkeypatch.setenv("DALI_RELABEL_CACHE", str(tmp_path / "cache"))


def one_line_error(capsys, command: str, *fragments: str) -> str:
    """The command's stderr is one error line naming every fragment (no traceback); returns it."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"dali-relabel {command}: error: "), err
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def copy_shards(source, to, *, drop_index_of: str | None = None):
    shutil.copytree(source, to)
    (to / "shardindex.json").unlink()      # the directory's .tar files, not the wids index's list
    if drop_index_of:
        index_path_for(to / drop_index_of).unlink()
    return to


def tree(path) -> dict:
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ==================================================================================================== damaged tars
def test_a_truncated_shard_with_its_index_is_named(small_demo, demo_shards, tmp_path, capsys):
    """Before: 'the index belongs to another version of the archive' (true of a replaced tar, not of a cut one)."""
    shards = copy_shards(demo_shards, tmp_path / "s")
    tar = shards / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[:tar.stat().st_size // 2])
    with pytest.raises(ShardError, match=r"shard-000001.tar: member .* ends at byte \d+ by its index "
                                         r"shard-000001.idx, but the tar has \d+ bytes: the tar is truncated"):
        shard_loader(small_demo, shards)
    assert main(["verify", str(small_demo.labels), "--shards", str(shards), "--no-decode", "--quiet"]) == 1
    out = capsys.readouterr().out
    damaged = [line for line in out.splitlines() if line.startswith("[damaged-shard]")]
    assert len(damaged) == 1 and "shard-000001.tar" in damaged[0] and "truncated" in damaged[0]
    # The other shards were checked: the damaged shard's MAX_COUNT images are the store keys in no shard.
    assert out.count("[unsharded-key]") == MAX_COUNT and "[missing-map]" not in out
    assert f"FAILED: {MAX_COUNT + 1} problem(s)" in out


def test_a_truncated_shard_without_an_index_is_named(small_demo, demo_shards, tmp_path):
    shards = copy_shards(demo_shards, tmp_path / "s", drop_index_of="shard-000001.tar")
    tar = shards / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[:tar.stat().st_size // 2])
    with pytest.raises(ShardError, match=r"shard-000001.tar: truncated: the file \(\d+ bytes\) ends inside a member; "
                                         r"copy the shard again"):
        shard_loader(small_demo, shards)


def test_a_damaged_member_header_is_not_the_end_of_the_shard(small_demo, demo_shards, tmp_path):
    """Before: tarfile stops listing silently at a damaged header that is not the first: the loader trained on the
    3 samples before it and left out the other 7 of that shard, without a word."""
    shards = copy_shards(demo_shards, tmp_path / "s", drop_index_of="shard-000001.tar")
    tar = shards / "shard-000001.tar"
    entries = read_index(index_path_for(demo_shards / "shard-000001.tar"))
    header = entries[3].components[0].offset - 512        # the 4th sample's image member header
    data = bytearray(tar.read_bytes())
    data[header:header + 100] = b"X" * 100
    tar.write_bytes(bytes(data))
    message = rf"shard-000001.tar: damaged or truncated at byte {header} of {len(data)}: no valid member header " \
              rf"there, so the samples after it cannot be found \(3 before it\)"
    with pytest.raises(ShardError, match=message):
        scan_tar(tar)
    for _ in range(2):      # and nothing was cached that would hide it next time
        with pytest.raises(ShardError, match=message):
            shard_loader(small_demo, shards)


def test_a_compressed_or_empty_shard_is_named(small_demo, demo_shards, tmp_path):
    shards = copy_shards(demo_shards, tmp_path / "s", drop_index_of="shard-000002.tar")
    tar = shards / "shard-000002.tar"
    tar.write_bytes(gzip.compress(tar.read_bytes()))
    with pytest.raises(ShardError, match=r"shard-000002.tar: a compressed tar; .* decompress it"):
        ShardSet.open(shards, progress=False)
    with tarfile.open(tar, "w"):
        pass
    with pytest.raises(ShardError, match=r"shard-000002.tar: the tar holds no samples"):
        ShardSet.open(shards, progress=False)


def test_a_damaged_index_file_is_named(small_demo, demo_shards, tmp_path):
    shards = copy_shards(demo_shards, tmp_path / "s")
    index = index_path_for(shards / "shard-000000.tar")
    index.write_bytes(b"\x89\xff\x00 binary garbage")
    with pytest.raises(ShardError, match=r"shard-000000.idx: not a webdataset index \(not text\); delete it"):
        shard_loader(small_demo, shards)
    index.write_text("v1.2 2\njpg 512 10 a.jpg\n")
    with pytest.raises(ShardError, match=r"shard-000000.idx: the header says 2 samples but 1 lines follow"):
        shard_loader(small_demo, shards)


# ============================================================================================ samples without a map
def test_samples_without_a_map_are_named_by_tar_and_member(small_demo, tmp_path, capsys):
    images = tmp_path / "imgs"
    shutil.copytree(small_demo.images, images)
    shutil.copy(next((images / "cat").glob("*.jpg")), images / "cat" / "99999.jpg")
    write_shards(images, tmp_path / "s", progress=False)
    with pytest.raises(KeyError, match=r"1 of 25 images have no label map .*/s/shard-000000.tar:cat/99999.jpg \(a "
                                       r"shard sample's __key__"):
        shard_loader(small_demo, tmp_path / "s")
    # Without a .cls member, one-hot targets cannot be made: the sample is named.
    write_shards(images / "cat", tmp_path / "flat", progress=False)    # a folder without classes: no .cls members
    with pytest.raises(ValueError, match=r"missing='onehot' needs a class label .* 1 have none \(a .cls member\), "
                                         r"e.g. .*flat/shard-000000.tar:99999.jpg: annotate them"):
        shard_loader(small_demo, tmp_path / "flat", missing="onehot")


# ============================================================================================== shards not found
def test_shards_that_do_not_exist(small_demo, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match=r"nope: no such directory \(ImageFolder root, or webdataset shards\)"):
        shard_loader(small_demo, tmp_path / "nope")
    with pytest.raises(ShardsNotFoundError, match=r"2 of 2 shards do not exist, e.g. .*nope/a-0.tar, .*nope/a-1.tar"):
        shard_loader(small_demo, str(tmp_path / "nope" / "a-{0..1}.tar"))
    with pytest.raises(ShardsNotFoundError, match=r"names no .tar shards"):
        ShardSet.open(str(tmp_path / "*.tar"))
    assert main(["verify", str(small_demo.labels), "--shards", str(tmp_path / "nope.tar"), "--quiet"]) == 2
    one_line_error(capsys, "verify", "1 of 1 shards do not exist", "nope.tar")
    assert main(["shard", "--out", str(tmp_path / "nope"), "--index-only"]) == 2
    one_line_error(capsys, "shard", f"{tmp_path / 'nope'}: no such directory to index")
    (tmp_path / "empty").mkdir()
    assert main(["shard", "--out", str(tmp_path / "empty"), "--index-only"]) == 2
    one_line_error(capsys, "shard", "empty: holds no .tar shards to index")


def test_index_only_names_a_damaged_tar(demo_shards, tmp_path, capsys):
    shards = copy_shards(demo_shards, tmp_path / "s")
    for index in shards.glob("*.idx"):
        index.unlink()
    tar = shards / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[:tar.stat().st_size // 2])
    assert main(["shard", "--out", str(shards), "--index-only"]) == 2
    one_line_error(capsys, "shard", "shard-000001.tar: truncated")
    assert index_path_for(shards / "shard-000000.tar").is_file()          # the one before it is indexed
    assert not index_path_for(tar).exists()


# ============================================================================================== the output directory
def test_shard_refuses_a_taken_output_and_changes_nothing(small_demo, demo_shards, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("user data")
    before = tree(taken)
    assert main(["shard", "--images", str(small_demo.images), "--out", str(taken), "--quiet"]) == 2
    one_line_error(capsys, "shard", f"{taken} is not empty and holds no dali-relabel shards: choose a new or empty "
                                    f"directory (nothing there was changed)")
    (tmp_path / "file").write_text("x")
    assert main(["shard", "--images", str(small_demo.images), "--out", str(tmp_path / "file"), "--quiet"]) == 2
    one_line_error(capsys, "shard", "file exists and is not a directory")
    mixed = tmp_path / "mixed"
    shutil.copytree(demo_shards, mixed)
    assert main(["shard", "--images", str(small_demo.images), "--out", str(mixed), "--seed", "7", "--max-count",
                 str(MAX_COUNT), "--quiet"]) == 2
    one_line_error(capsys, "shard", "holds shards of another plan (seed 0 → 7)")
    (mixed / MANIFEST).write_text("{damaged")
    assert main(["shard", "--images", str(small_demo.images), "--out", str(mixed), "--quiet"]) == 2
    one_line_error(capsys, "shard", f"{MANIFEST} is damaged (not a JSON object): delete the directory")
    assert tree(taken) == before and (tmp_path / "file").read_text() == "x"


def test_shard_refuses_an_output_inside_the_images(small_demo, tmp_path, capsys):
    """Before: accepted; the next run listed the shard folder as a class (shifting every later class's label)."""
    images = tmp_path / "imgs"
    shutil.copytree(small_demo.images, images)
    with pytest.raises(InvalidArgument, match=r"is inside the image folder .*imgs: the shards would be listed"):
        write_shards(images, images / "shards", progress=False)
    assert main(["shard", "--images", str(images), "--out", str(images / "zz"), "--quiet"]) == 2
    one_line_error(capsys, "shard", f"--out {images / 'zz'}: is inside the image folder")
    assert not (images / "zz").exists() and not (images / "shards").exists()


def test_shard_arguments_are_refused_by_name(small_demo, tmp_path, capsys):
    out = str(tmp_path / "out")
    for argv, fragment in [(["--max-count", "0"], "--max-count 0: must be an integer >= 1"),
                           (["--max-size", "0"], "--max-size must be > 0 (MiB), got 0.0"),
                           (["--prefix", "a.b"], "--prefix a.b: must be a non-empty file name without '/', '.'"),
                           (["--index-only"], "--index-only writes the missing index files")]:
        assert main(["shard", "--images", str(small_demo.images), "--out", out, "--quiet", *argv]) == 2
        one_line_error(capsys, "shard", fragment)
    assert main(["shard", "--out", out]) == 2
    one_line_error(capsys, "shard", "--images DIR is required (or --index-only)")
    assert not (tmp_path / "out").exists()


def test_verify_of_a_bank_refuses_shards_and_images(small_demo, demo_shards, tmp_path, capsys):
    """A bank has no keys to check a dataset against: --shards / --images with one are refused, not ignored."""
    from dali_relabel import LabelStore

    bank = LabelStore.open(str(small_demo.labels)).materialize(tmp_path / "banks", progress=False)
    for option, value in (("--shards", demo_shards), ("--images", small_demo.images)):
        assert main(["verify", str(bank.path), option, str(value), "--quiet"]) == 2
        one_line_error(capsys, "verify", f"{bank.path} is a serving bank: --images/--shards check a label store's")
    assert main(["verify", str(bank.path), "--quiet"]) == 0
