"""Saving a ``.seb`` bundle (``docs/bundle.md``): atomic writes that leave no temporary and keep
the old file on failure, no pickle and JSON provenance, the schema-version migration path, and
what the write side refuses. Bundles from ``random_bundle`` (``tests/bundle_factory.py``)."""

from __future__ import annotations

import dataclasses
import os
import pickle
from typing import Any, Dict

import numpy as np
import pytest

from spikeedge.runtime import bundle as fmt
from spikeedge.runtime.bundle import (
    DirectEncoder,
)
from spikeedge.errors import BundleError
from bundle_factory import assert_same, random_bundle, split_blob


# ----------------------------------------------------------------------------- atomic save


def test_save_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "model.seb"
    fmt.save(random_bundle(0, "direct"), path)
    fmt.save(random_bundle(1, "rate"), path)  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["model.seb"]
    assert_same(fmt.load(path), random_bundle(1, "rate"))


def test_save_creates_missing_folders(tmp_path):
    path = tmp_path / "a" / "b" / "model.seb"
    fmt.save(random_bundle(0, "delta"), path)
    assert fmt.load(path).encoder.kind == "encoder.delta"
    assert os.listdir(path.parent) == ["model.seb"]


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "model.seb"
    fmt.save(random_bundle(0, "direct"), path)
    old = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError):
        fmt.save(random_bundle(1, "rate"), path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["model.seb"]


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fmt.save(random_bundle(0, "direct"), tmp_path / "model.seb")
    assert os.listdir(tmp_path) == []


def test_invalid_bundle_is_not_written(tmp_path):
    path = tmp_path / "model.seb"
    fmt.save(random_bundle(0, "direct"), path)
    old = path.read_bytes()
    good = random_bundle(0, "direct")
    bad = dataclasses.replace(good, encoder=DirectEncoder(good.n_inputs + 1, 1.0, 8))  # channel mismatch
    with pytest.raises(BundleError, match="cannot write bundle"):
        fmt.save(bad, path)
    with pytest.raises(BundleError, match="output"):
        fmt.dumps(dataclasses.replace(good, output="all"))
    assert path.read_bytes() == old and os.listdir(tmp_path) == ["model.seb"]


# ----------------------------------------------------------------------------- no pickle, provenance


def test_no_pickle_and_nested_json_provenance(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("pickle or np.load/np.save used by the bundle format")

    for mod, name in [(pickle, "dumps"), (pickle, "loads"), (pickle, "dump"), (pickle, "load"),
                      (pickle, "Pickler"), (pickle, "Unpickler"), (np, "load"), (np, "save"), (np, "savez")]:
        monkeypatch.setattr(mod, name, forbidden)
    bundle = random_bundle(6, "rate", "zero")
    nested: Dict[str, Any] = {"a": [{"b": {"c": [1, 2.5, "x", None, True, {"d": []}]}}], "e": {"f": {"g": {"h": -7}}}}
    bundle = dataclasses.replace(bundle, provenance=dict(bundle.provenance, nested=nested))
    path = tmp_path / "model.seb"
    fmt.save(bundle, path)
    back = fmt.load(path)
    assert back.provenance == bundle.provenance and back.provenance["nested"] == nested
    assert_same(bundle, back)
    doc, _, _ = split_blob(path.read_bytes())
    assert doc["provenance"]["nested"] == nested  # plain JSON in the manifest, readable without spikeedge


def test_provenance_may_be_empty_or_absent():
    b = dataclasses.replace(random_bundle(0, "direct"), provenance={})
    assert fmt.loads(fmt.dumps(b)).provenance == {}
    manifest, arrays = fmt.bundle_to_manifest(b)
    del manifest["provenance"]
    assert fmt.loads(fmt.encode_bytes(manifest, arrays)).provenance == {}


# ----------------------------------------------------------------------------- schema versions


def test_migration_path(monkeypatch):
    """A schema version this runtime no longer reads goes through MIGRATIONS one step at a time
    up to one it reads (two made-up versions before 1, the first this runtime reads)."""
    first = -1
    manifest, arrays = fmt.bundle_to_manifest(random_bundle(2, "direct"))
    old = dict(manifest, schema_version=first, output_mode=manifest["output"])
    del old["output"]
    seen = []

    def two_to_one(m):  # e.g. a renamed field
        seen.append(m["schema_version"])
        m = dict(m, output=m["output_mode"], schema_version=m["schema_version"] + 1)
        del m["output_mode"]
        return m

    def one_to_two(m):
        seen.append(m["schema_version"])
        return dict(m, schema_version=m["schema_version"] + 1)

    blob = fmt.encode_bytes(old, arrays)
    with pytest.raises(BundleError, match="schema version %d is not supported" % first):
        fmt.loads(blob)
    monkeypatch.setitem(fmt.MIGRATIONS, first, two_to_one)
    monkeypatch.setitem(fmt.MIGRATIONS, first + 1, one_to_two)
    back = fmt.loads(blob)
    assert seen == [first, first + 1]
    assert back.output == manifest["output"]
    assert fmt.MIGRATIONS.get(fmt.SCHEMA_VERSION) is None  # the current version never migrates


# ----------------------------------------------------------------------------- known bugs on the write side


def test_dumps_refuses_nan_scalar_with_bundle_error():
    b = random_bundle(0, "direct")
    with pytest.raises(BundleError):
        fmt.dumps(dataclasses.replace(b, encoder=DirectEncoder(b.n_inputs, float("nan"), 8)))


def test_dumps_refuses_what_load_would_refuse():
    b = random_bundle(0, "direct", n_layers=1)
    bad = dataclasses.replace(b, layers=(dataclasses.replace(b.layers[0], a_syn=np.full(b.layers[0].n, 70000, np.int32)),))
    with pytest.raises(BundleError):
        fmt.dumps(bad)  # today: written, and then refused by loads ("a_syn is outside [0, 65536]")


def test_saved_file_gets_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "model.seb"
        fmt.save(random_bundle(0, "direct"), path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # readable by the board's runtime user, like any new file
