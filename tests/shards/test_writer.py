"""dali-relabel shard: shards webdataset and DALI read as intended, shuffled, resumable, never overwriting."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
import webdataset
import wds2idx   # DALI's own index tool (shipped with the DALI wheel)
from shard_util import MAX_COUNT, demo_shards  # noqa: F401 (fixture)
from loader_util import small_demo  # noqa: F401 (fixture)

from dali_relabel.cli import main as cli_main
from dali_relabel.image_folder import ImageList
from dali_relabel.shards import ShardSet, index_path_for, read_index
from dali_relabel.shards.writer import ShardWriteError, write_shards


def test_indexes_are_what_dalis_wds2idx_writes(demo_shards, tmp_path):
    tars = sorted(demo_shards.glob("*.tar"))
    assert [t.name for t in tars] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    for tar in tars:
        reference = tmp_path / f"{tar.stem}.idx"
        wds2idx.IndexCreator(str(tar), str(reference), verbose=False).create_index()
        assert index_path_for(tar).read_text() == reference.read_text()


def test_the_webdataset_library_reads_keys_images_and_classes(demo_shards, small_demo):
    listing = ImageList.from_folder(small_demo.images)
    label_of = dict(zip(listing.keys, listing.labels))
    urls = [str(t) for t in sorted(demo_shards.glob("*.tar"))]
    seen = []
    for sample in webdataset.WebDataset(urls, shardshuffle=False):
        key = sample["__key__"]
        stored = f"{key}.jpg"
        assert sample["jpg"] == (small_demo.images / stored).read_bytes()
        assert int(sample["cls"]) == label_of[stored]
        seen.append(stored)
    assert Counter(seen) == Counter(listing.keys)
    wids = json.loads((demo_shards / "shardindex.json").read_text())
    assert wids["__kind__"] == "wids-shard-index-v1"
    assert [(e["url"], e["nsamples"]) for e in wids["shardlist"]] == [("shard-000000.tar", 10), ("shard-000001.tar", 10),
                                                                     ("shard-000002.tar", 4)]


def test_images_are_shuffled_before_cutting_and_limits_hold(small_demo, demo_shards, tmp_path):
    listing = ImageList.from_folder(small_demo.images)
    keys = ShardSet.open(demo_shards).sample_keys
    assert sorted(keys) == sorted(k[:-4] for k in listing.keys) and keys != [k[:-4] for k in listing.keys]
    first = {k.split("/")[0] for k in keys[:MAX_COUNT]}
    assert len(first) >= 4                          # a shard holds many classes, not one class after another
    same = write_shards(small_demo.images, tmp_path / "again", max_count=MAX_COUNT, progress=False)
    assert all((tmp_path / "again" / n).read_bytes() == (demo_shards / n).read_bytes() for n in same.shards)
    sizes = [(small_demo.images / k).stat().st_size for k in listing.keys]
    small = write_shards(small_demo.images, tmp_path / "small", max_bytes=3 * max(sizes) + 5 * 1024, progress=False)
    assert len(small.shards) > 3
    for name in small.shards:   # each tar stays under the limit (its end-of-archive padding aside)
        entries = read_index(index_path_for(tmp_path / "small" / name))
        assert 1 <= len(entries) <= 4


def test_an_interrupted_conversion_resumes_and_keeps_finished_shards(small_demo, demo_shards, tmp_path):
    out = tmp_path / "s"
    shutil.copytree(demo_shards, out)
    (out / "shard-000001.tar").unlink()            # killed while writing shard 1 (its tar lands last)
    (out / "dali_relabel_shards.json").write_text((out / "dali_relabel_shards.json").read_text()
                                                  .replace('"complete": true', '"complete": false'))
    report = write_shards(small_demo.images, out, max_count=MAX_COUNT, progress=False)
    assert (report.written, report.kept) == (1, 2)
    assert (out / "shard-000001.tar").read_bytes() == (demo_shards / "shard-000001.tar").read_bytes()


def test_refuses_to_overwrite_or_mix_plans(small_demo, demo_shards, tmp_path):
    with pytest.raises(ShardWriteError, match=r"holds shards of another plan \(seed 0 → 1\); write to a new directory"):
        write_shards(small_demo.images, demo_shards, max_count=MAX_COUNT, seed=1, progress=False)
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(ShardWriteError, match="is not empty and holds no dali-relabel shards"):
        write_shards(small_demo.images, tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_refuses_names_that_are_not_webdataset_keys(tmp_path):
    src = tmp_path / "imgs" / "c"
    src.mkdir(parents=True)
    (src / "a.v2.jpg").write_bytes(b"x")
    with pytest.raises(ShardWriteError, match=r"1 image names cannot be webdataset keys .*c/a.v2.jpg"):
        write_shards(tmp_path / "imgs", tmp_path / "out", progress=False)
    (src / "a.v2.jpg").unlink()
    (src / "b.jpg").write_bytes(b"x")
    (src / "b.png").write_bytes(b"x")
    with pytest.raises(ShardWriteError, match=r"c/b.jpg and c/b.png would both be sample 'c/b'"):
        write_shards(tmp_path / "imgs", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_shard_and_verify(small_demo, tmp_path, capsys):
    out = tmp_path / "shards"
    assert cli_main(["shard", "--images", str(small_demo.images), "--out", str(out), "--max-count", "8",
                     "--quiet"]) == 0
    assert "24 images in 3 shards" in capsys.readouterr().out
    assert cli_main(["verify", str(small_demo.labels), "--shards", str(out), "--quiet"]) == 0
    assert f"OK: {small_demo.labels} and {out}: 24 samples, no problems" in capsys.readouterr().out
    for idx in out.glob("*.idx"):
        idx.unlink()
    assert cli_main(["shard", "--out", str(out), "--index-only"]) == 0
    assert "wrote 3 index files" in capsys.readouterr().out
    assert cli_main(["shard", "--images", str(small_demo.images), "--out", str(tmp_path)]) == 2
    assert "is not empty and holds no dali-relabel shards" in capsys.readouterr().err


def test_verify_names_samples_without_maps_and_keys_without_samples(small_demo, tmp_path, capsys):
    images = tmp_path / "imgs"
    shutil.copytree(small_demo.images, images)
    extra = images / "cat" / "99999.jpg"
    shutil.copy(next((images / "cat").glob("*.jpg")), extra)
    dropped = sorted((images / "coins").glob("*.jpg"))[0]
    dropped.unlink()
    (images / "rocket" / "00010.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    write_shards(images, tmp_path / "s", progress=False)
    assert cli_main(["verify", str(small_demo.labels), "--shards", str(tmp_path / "s"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "[missing-map] " in out and "cat/99999.jpg: sample key 'cat/99999' matches no store key" in out
    assert f"[unsharded-key] coins/{dropped.name}: store key is in no shard" in out
    assert "[undecodable] " in out and "rocket/00010.jpg" in out
    assert "FAILED: 3 problem(s)" in out


def test_labels_are_read_only_when_needed_and_checked_by_verify(small_demo, tmp_path, capsys):
    """A loader with a store never reads the .cls members (one read per sample in every tar); verify compares them
    with the store's labels."""
    from shard_util import shard_loader

    listing = ImageList.from_folder(small_demo.images)

    def shards(name, cls_of):
        (tmp_path / name).mkdir()
        with webdataset.TarWriter(str(tmp_path / name / "w-000000.tar")) as sink:
            for i, (key, label) in enumerate(zip(listing.keys, listing.labels)):
                sink.write({"__key__": key[:-4], "jpg": (small_demo.images / key).read_bytes(), "cls": cls_of(i, label)})
        return tmp_path / name

    garbage = shards("garbage", lambda i, label: b"not a number" if i == 0 else str(label).encode())
    assert len(shard_loader(small_demo, garbage).data) == 24     # constructed: no .cls read
    assert cli_main(["verify", str(small_demo.labels), "--shards", str(garbage), "--no-decode", "--quiet"]) == 1
    assert f"{listing.keys[0][:-4]}.cls holds b'not a number', not a class index" in capsys.readouterr().out
    wrong = shards("wrong", lambda i, label: str((label + (i == 1)) % 10).encode())
    assert cli_main(["verify", str(small_demo.labels), "--shards", str(wrong), "--no-decode", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"[label-mismatch] {wrong / 'w-000000.tar'}:{listing.keys[1][:-4]}.jpg: .cls says " in out
    assert "FAILED: 1 problem(s)" in out
