"""DALI's webdataset index files, shard specifications and the __key__ → store key rules."""

from __future__ import annotations

import io
import json
import tarfile

import hypothesis.strategies as st
import pytest
from hypothesis import given

from dali_relabel.shards import (Component, SampleEntry, ShardSet, expand_braces, index_path_for, is_shard_spec,
                                 match_sample_keys, read_index, scan_tar, shard_paths, strip_extension, write_index)


def make_tar(path, members):
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_scan_groups_consecutive_members_by_key_and_reads_offsets(tmp_path):
    tar = make_tar(tmp_path / "a.tar", [("d/x.jpg", b"J" * 700), ("d/x.cls", b"3"), ("d/.hidden.txt", b"h"),
                                        ("y.tar.gz", b"z"), ("d/x.json", b"{}")])
    samples = scan_tar(tar)
    assert [s.key for s in samples] == ["d/x", "y", "d/x"]        # runs of one key, as DALI groups them
    assert [c.ext for c in samples[0].components] == ["jpg", "cls"] and samples[1].components[0].ext == "tar.gz"
    raw = tar.read_bytes()
    for s in samples:
        for c in s.components:
            assert c.offset % 512 == 0
    first = samples[0].components[0]
    assert raw[first.offset:first.offset + first.size] == b"J" * 700


def test_index_round_trips_and_names_the_bad_line(tmp_path):
    samples = [SampleEntry("k/a", (Component("jpg", 512, 10), Component("cls", 1536, 1))),
               SampleEntry("b", (Component("png", 2048, 5),))]
    write_index(tmp_path / "i.idx", samples + samples[:1])         # repeats allowed
    assert read_index(tmp_path / "i.idx") == samples + samples[:1]
    (tmp_path / "bad.idx").write_text("v1.2 1\njpg 513 10 k/a.jpg\n")
    with pytest.raises(ValueError, match=r"bad.idx: line 2: component .* is malformed"):
        read_index(tmp_path / "bad.idx")
    (tmp_path / "old.idx").write_text("v1.1 1\njpg 512 10\n")
    with pytest.raises(ValueError, match="index version v1.1 has no member names.*wds2idx"):
        read_index(tmp_path / "old.idx")
    (tmp_path / "count.idx").write_text("v1.2 3\njpg 512 10 a.jpg\n")
    with pytest.raises(ValueError, match="the header says 3 samples but 1 lines follow"):
        read_index(tmp_path / "count.idx")
    with pytest.raises(ValueError, match="contains whitespace"):
        write_index(tmp_path / "w.idx", [SampleEntry("a b", (Component("jpg", 512, 1),))])


def test_index_names_follow_wds2idx():
    assert index_path_for("/d/train-000001.tar").as_posix() == "/d/train-000001.idx"
    assert index_path_for("x.tar").name == "x.idx"


def test_a_stale_index_is_refused_and_a_missing_one_is_built_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DALI_RELABEL_CACHE", str(tmp_path / "cache"))
    tar = make_tar(tmp_path / "s.tar", [("a.jpg", b"1" * 600), ("b.jpg", b"2" * 10)])
    shards = ShardSet.open(tmp_path / "s.tar")
    assert shards.sample_keys == ["a", "b"] and "has no index file (s.idx); scanning it once" in capsys.readouterr().err
    ShardSet.open(tmp_path / "s.tar")
    assert capsys.readouterr().err == ""                              # cached: scanned once
    write_index(index_path_for(tar), [SampleEntry("a", (Component("jpg", 512, 10**6),))])
    with pytest.raises(ValueError, match=r"s.tar: member a.jpg ends at byte 1000512 by its index s.idx, but the tar "
                                         r"has \d+ bytes: the tar is truncated \(copy it again\) or the index belongs "
                                         r"to another version"):
        ShardSet.open(tar)


def test_shard_specifications(tmp_path):
    for i in range(3):
        make_tar(tmp_path / f"t-{i:03d}.tar", [(f"k{i}.jpg", b"x")])
    expected = [tmp_path / f"t-{i:03d}.tar" for i in range(3)]
    assert shard_paths(tmp_path) == expected
    assert shard_paths(str(tmp_path / "t-{000..002}.tar")) == expected
    assert shard_paths(str(tmp_path / "t-*.tar")) == expected
    assert shard_paths([tmp_path / "t-002.tar", tmp_path / "t-000.tar"]) == [expected[2], expected[0]]
    (tmp_path / "shardindex.json").write_text(json.dumps({"__kind__": "wids-shard-index-v1", "wids_version": 1,
                                                          "shardlist": [{"url": "t-001.tar", "nsamples": 1}]}))
    assert shard_paths(tmp_path) == [expected[1]] == shard_paths(tmp_path / "shardindex.json")
    with pytest.raises(FileNotFoundError, match="1 of 4 shards do not exist, e.g. .*t-003.tar"):
        shard_paths(str(tmp_path / "t-{000..003}.tar"))
    assert expand_braces("a{01..03}b{x,y}") == ["a01bx", "a01by", "a02bx", "a02by", "a03bx", "a03by"]
    assert is_shard_spec(tmp_path) and is_shard_spec("x/train-{0..9}.tar") and is_shard_spec([tmp_path])
    (tmp_path / "classdir").mkdir()
    with pytest.raises(ValueError, match="holds both .tar shards .* and folders"):
        is_shard_spec(tmp_path)
    assert not is_shard_spec(tmp_path / "classdir")


def test_keys_match_by_path_then_by_unique_file_name():
    store = ["n01/n01_1.JPEG", "n02/n02_7.JPEG", "a/x.jpg", "b/x.jpg", "flat.png"]
    rows = match_sample_keys(["n01/n01_1", "n02_7", "flat", "n01/nothing", "c/n02_7"], store)
    assert rows.tolist() == [0, 1, 4, -1, -1]   # a key with a directory matches only by path
    assert match_sample_keys(["a/x", "b/x"], store).tolist() == [2, 3]
    with pytest.raises(ValueError, match=r"shard sample key 'x' matches several store keys \(a/x.jpg, b/x.jpg\)"):
        match_sample_keys(["x"], store)


@given(st.lists(st.tuples(st.sampled_from(["", "c1/", "c2/sub/"]), st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True),
                          st.sampled_from(["jpg", "JPEG", "png"])), min_size=1, max_size=20,
                unique_by=lambda t: t[0] + t[1]))
def test_path_keys_map_back_to_their_store_keys(parts):
    store = [f"{d}{name}.{ext}" for d, name, ext in parts]
    rows = match_sample_keys([strip_extension(k) for k in store], store)
    assert rows.tolist() == list(range(len(store)))
