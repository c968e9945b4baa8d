"""ArtifactCache: hits, misses, and every way an entry is rejected."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import rkd.runtime
from rkd.cache import ArtifactCache, StaleCacheWarning, canonical_json, config_digest, package_version
from rkd.runtime import UnsafeCheckpointError
from rkd.train import TrainConfig

KEY = {"what": "teacher", "dataset": "digits", "seed": 0, "dims": (16, 32), "train": TrainConfig(steps=5)}
PAYLOAD = {"weight": torch.arange(6.0).view(2, 3), "step": 5, "names": ["a", "b"], "nothing": None}


def assert_payload_equal(a, b):
    assert a.keys() == b.keys()
    assert torch.equal(a["weight"], b["weight"])
    assert {k: v for k, v in a.items() if k != "weight"} == {k: v for k, v in b.items() if k != "weight"}


def test_round_trip_and_miss(tmp_path):
    cache = ArtifactCache(tmp_path / "cache")
    assert cache.load(KEY) is None  # no entry: a plain miss, no warning, nothing created
    path = cache.save(KEY, PAYLOAD)
    assert path == cache.path(KEY) and path.name == f"{config_digest(KEY)}.pt"
    assert_payload_equal(cache.load(KEY), PAYLOAD)
    assert cache.load({**KEY, "seed": 1}) is None  # another configuration: another entry
    assert os.listdir(tmp_path / "cache") == [path.name]


def test_key_is_canonical():
    assert canonical_json({"b": (1, 2), "a": Path("/x")}) == '{"a":"/x","b":[1,2]}'
    assert config_digest({"a": 1, "b": [1, 2]}) == config_digest({"b": (1, 2), "a": 1})
    assert config_digest({"a": 1}) != config_digest({"a": 2})
    assert '"train":{"checkpoint_every":0' in canonical_json(KEY)  # dataclasses become their fields
    with pytest.raises(TypeError, match=r"cache key config\['model'\] is a Linear"):
        canonical_json({"model": torch.nn.Linear(1, 1)})
    with pytest.raises(TypeError, match="NaN and infinities"):
        canonical_json({"lr": float("nan")})
    with pytest.raises(TypeError, match="non-string keys"):
        canonical_json({1: "a"})


def test_entry_of_another_version_is_a_miss_with_a_reason(tmp_path):
    ArtifactCache(tmp_path, version="0.0.1").save(KEY, PAYLOAD)
    cache = ArtifactCache(tmp_path)
    source = (Path(__file__).parents[1] / "rkd" / "__init__.py").read_text()
    assert cache.version == package_version() == re.search(r'__version__ = "(.+)"', source).group(1)
    with pytest.warns(StaleCacheWarning, match=f"written by rkd 0.0.1, this is {package_version()}"):
        assert cache.load(KEY) is None
    cache.save(KEY, PAYLOAD)  # recomputed: replaces the stale entry
    assert_payload_equal(cache.load(KEY), PAYLOAD)


def test_entry_recording_another_configuration_is_a_miss(tmp_path):
    cache = ArtifactCache(tmp_path)
    # the file of KEY holding the entry of another configuration (a hand-copied file, say)
    cache.save({"other": True}, PAYLOAD).rename(cache.path(KEY))
    with pytest.warns(StaleCacheWarning, match=r'records another configuration: \{"other":true\}'):
        assert cache.load(KEY) is None


def test_half_written_temporary_file_is_ignored(tmp_path):
    cache = ArtifactCache(tmp_path)
    entry = cache.path(KEY)
    # what a SIGKILL in the middle of save() leaves: a temporary file, no entry
    (tmp_path / f".{entry.name}.x1y2z3.tmp").write_bytes(b"\x80\x02half an ent")
    assert cache.load(KEY) is None

    # a crash inside the write leaves no entry either, and the old entry when there was one
    cache.save(KEY, PAYLOAD)

    class Crash(BaseException):
        pass

    def crashing_save(obj, handle, *args, **kwargs):
        handle.write(b"\x80\x02partial")
        raise Crash()

    real_save = torch.save
    rkd.runtime.torch.save = crashing_save
    try:
        with pytest.raises(Crash):
            cache.save(KEY, {"weight": torch.zeros(1)})
    finally:
        rkd.runtime.torch.save = real_save
    assert_payload_equal(cache.load(KEY), PAYLOAD)


def test_truncated_or_foreign_entry_is_a_miss_with_a_reason(tmp_path):
    cache = ArtifactCache(tmp_path)
    path = cache.save(KEY, PAYLOAD)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(StaleCacheWarning, match="unreadable"):
        assert cache.load(KEY) is None
    torch.save({"just": "a dict"}, path)
    with pytest.warns(StaleCacheWarning, match="not an rkd cache entry"):
        assert cache.load(KEY) is None


def test_entry_with_pickled_objects_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo this must never run",))

    cache = ArtifactCache(tmp_path)
    torch.save({"config": canonical_json(KEY), "version": package_version(), "payload": Payload()}, cache.path(KEY))
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        cache.load(KEY)


@dataclass
class NotPlain:
    x: int = 1


def test_save_refuses_payloads_a_safe_load_would_refuse(tmp_path):
    cache = ArtifactCache(tmp_path)
    with pytest.raises(TypeError, match=r"payload\['model'\]\['extra'\] is a NotPlain"):
        cache.save(KEY, {"model": {"w": torch.zeros(1), "extra": NotPlain()}})
    assert not any(tmp_path.iterdir()), "nothing is written for a refused payload"
