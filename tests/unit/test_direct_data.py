"""Workers reading their micro-shards from the dataset object (trainer/data/direct.py): the rule
that decides when, the launch's read of everything but the training examples' bytes (the file
checked as before), their place pinned to the object's ETag, and a worker's load that gives the
bits the cache path gives."""

from __future__ import annotations

import io
import json
import re
import secrets
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.fakes.services import fake_services
from trainer.data import direct
from trainer.data.loader import DatasetError, load_raw, prepare, read_checked_located, read_located
from trainer.errors import ObjectChanged
from trainer.handlers.worker import WorkerEvent, WorkerFailed, WorkerInvocation
from trainer.parallel import launching, shards
from trainer.stores.run_store import FAILURE_REASON
from trainer.vocabulary import RunStatus

BUCKET, PREFIX = "fake-bucket", "datasets/"
PLAIN = direct.Stored(offset=2048, shape=(100, 8, 8), dtype="|u1", plain=True)


def arrays(dtype: str = "u1") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "train_set_x": rng.integers(0, 256, (200, 4, 4)).astype(dtype),
        "train_set_y": rng.integers(0, 3, 200),
        "test_set_x": rng.integers(0, 256, (30, 4, 4)).astype(dtype),
        "test_set_y": rng.integers(0, 3, 30),
    }


def h5_bytes(data: dict[str, np.ndarray], **options) -> bytes:
    out = io.BytesIO()
    with h5py.File(out, "w") as handle:
        for key, value in data.items():
            handle.create_dataset(key, data=value, **options)
    return out.getvalue()


def npz_bytes(data: dict[str, np.ndarray], compressed: bool = False) -> bytes:
    out = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(out, **data)
    return out.getvalue()


def stored_object(svc, name: str, body: bytes) -> str:
    svc.blob_store.objects[(BUCKET, PREFIX + name)] = body
    return f"s3://{BUCKET}/{PREFIX}{name}"


def located(svc, source: str, normalize: str = "auto", fraction: float = 0.0, workers: int = 4):
    return read_located(source, svc.blob_store, BUCKET, PREFIX, normalize, fraction, workers)


# -- the rule --------------------------------------------------------------------------------------
def test_the_rule_takes_a_plain_uint8_set_of_a_multi_worker_run_with_no_statistics_and_no_carve() -> None:
    source = "s3://b/datasets/x.h5"
    assert direct.why_not(source, PLAIN, "auto", 0.0, 2) is None
    assert direct.why_not(source, PLAIN, "none", 0.0, 16) is None
    refused = {
        "one worker": direct.why_not(source, PLAIN, "auto", 0.0, 1),
        "a local file": direct.why_not("/data/x.h5", PLAIN, "auto", 0.0, 2),
        "a built-in": direct.why_not("moons", PLAIN, "auto", 0.0, 2),
        "minmax": direct.why_not(source, PLAIN, "minmax", 0.0, 2),
        "standardize": direct.why_not(source, PLAIN, "standardize", 0.0, 2),
        "held out": direct.why_not(source, PLAIN, "auto", 0.2, 2),
        "float x": direct.why_not(source, direct.Stored(2048, (100, 64), "<f4", True), "auto", 0.0, 2),
        "uint16 x": direct.why_not(source, direct.Stored(2048, (100, 64), "<u2", True), "auto", 0.0, 2),
        "compressed": direct.why_not(source, direct.Stored(None, (100, 64), "|u1", False), "auto", 0.0, 2),
        "no storage": direct.why_not(source, direct.Stored(None, (100, 64), "|u1", True), "auto", 0.0, 2),
        "no features": direct.why_not(source, direct.Stored(2048, (100,), "|u1", True), "auto", 0.0, 2),
        "other format": direct.why_not(source, None, "auto", 0.0, 2),
    }
    assert all(refused.values()), [k for k, v in refused.items() if not v]
    assert "statistics" in refused["minmax"] and "validation_fraction" in refused["held out"]


def test_a_place_names_the_bytes_of_a_block_of_examples_and_survives_its_record_only_whole() -> None:
    place = direct.place_of(PLAIN, "b", "datasets/x.h5", '"etag"', "v1")
    assert (place.rows, place.row_bytes) == (100, 64)
    assert place.byte_range(10, 20) == (2048 + 640, 2048 + 1280)
    with pytest.raises(ValueError, match="not within"):
        place.byte_range(90, 101)
    assert launching.place_of(launching.place_array(place)) == place
    for broken in ('{"bucket": "b"}', place.to_json().replace('"|u1"', '"<f8"'), place.to_json().replace("2048", "-1")):
        with pytest.raises(ValueError, match="malformed"):
            direct.Place.from_json(broken)
    with pytest.raises(ValueError, match="answered 3 bytes"):
        place.rows_of(b"abc", 0, 1)


# -- the launch's read -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["h5", "npz"])
def test_the_launch_reads_everything_but_the_training_examples(kind: str) -> None:
    svc, data = fake_services(), arrays()
    body = h5_bytes(data) if kind == "h5" else npz_bytes(data)
    source = stored_object(svc, f"set.{kind}", body)
    raw, place = located(svc, source)
    whole = load_raw(source, svc.blob_store.read)
    for key in ("train_set_y", "test_set_x", "test_set_y"):
        assert np.array_equal(raw[key], whole[key]), key
    assert raw["train_set_x"].shape == whole["train_set_x"].shape and raw["train_set_x"].dtype == np.uint8
    assert place.etag == svc.blob_store.head(BUCKET, PREFIX + f"set.{kind}")[1]
    # The place's bytes are the examples, as the whole read has them.
    rows = place.rows_of(body[slice(*place.byte_range(50, 75))], 50, 75)
    assert np.array_equal(rows, whole["train_set_x"][50:75].reshape(25, -1))


def test_a_large_set_is_not_fetched_by_the_launch() -> None:
    """A set of several blocks: the launch fetches a fraction of the object, not its examples."""
    svc = fake_services()
    data = arrays()
    data["train_set_x"] = np.random.default_rng(1).integers(0, 256, (20_000, 28, 28), dtype=np.uint8)
    data["train_set_y"] = np.zeros(20_000, dtype=np.int64)
    body = h5_bytes(data)
    source = stored_object(svc, "large.h5", body)
    fetched = []
    inner = svc.blob_store.read_range
    svc.blob_store.read_range = lambda b, k, start, stop, etag: fetched.append(stop - start) or inner(
        b, k, start, stop, etag
    )
    found = located(svc, source)
    assert found is not None
    assert sum(fetched) < len(body) // 4, (sum(fetched), len(body))


@pytest.mark.parametrize(
    ("name", "build", "options"),
    [
        ("gzip.h5", lambda d: h5_bytes(d, compression="gzip"), {}),
        ("chunked.h5", lambda d: h5_bytes(d, chunks=True), {}),
        ("deflated.npz", lambda d: npz_bytes(d, compressed=True), {}),
        ("float.h5", lambda d: h5_bytes(arrays("f4")), {}),
        ("plain.h5", h5_bytes, {"normalize": "standardize"}),
        ("plain.h5", h5_bytes, {"fraction": 0.2}),
        ("plain.h5", h5_bytes, {"workers": 1}),
    ],
)
def test_anything_else_reads_the_set_whole_as_before(name: str, build, options: dict) -> None:
    svc = fake_services()
    source = stored_object(svc, name, build(arrays()))
    assert located(svc, source, **options) is None


def test_the_launch_checks_a_file_as_before(tmp_path: Path) -> None:
    """External links, declared sizes past the limit and label problems are refused by the located
    read as by the whole one, naming the same problem."""
    svc = fake_services()
    data = arrays()
    marker = tmp_path / "elsewhere.h5"
    with h5py.File(marker, "w") as handle:
        handle.create_dataset("data", data=data["train_set_x"])
    out = io.BytesIO()
    with h5py.File(out, "w") as handle:
        for key, value in data.items():
            if key != "train_set_x":
                handle.create_dataset(key, data=value)
        handle["train_set_x"] = h5py.ExternalLink(str(marker), "data")
    source = stored_object(svc, "linked.h5", out.getvalue())
    with pytest.raises(DatasetError, match="'train_set_x' is a ExternalLink"):
        located(svc, source)
    plain = stored_object(svc, "plain.h5", h5_bytes(data))
    with pytest.raises(DatasetError, match="bytes, more than the 3000 bytes allowed"):
        read_located(plain, svc.blob_store, BUCKET, PREFIX, "auto", 0.0, 2, limit=3_000)
    out = io.BytesIO()
    with h5py.File(out, "w") as handle:  # a small file declaring a huge x (its storage never allocated)
        for key, value in data.items():
            if key != "train_set_x":
                handle.create_dataset(key, data=value)
        handle.create_dataset("train_set_x", shape=(1_000_000, 784), dtype="u1")
    huge = stored_object(svc, "huge.h5", out.getvalue())
    with pytest.raises(DatasetError, match="'train_set_x' declares shape"):
        read_located(huge, svc.blob_store, BUCKET, PREFIX, "auto", 0.0, 2, limit=100_000)
    with pytest.raises(DatasetError, match="is not the configured bucket"):
        read_located(plain.replace(BUCKET, "other"), svc.blob_store, BUCKET, PREFIX, "auto", 0.0, 2)
    bad = dict(data, train_set_y=-data["train_set_y"] - 1)
    found, problems = read_checked_located(
        stored_object(svc, "bad.h5", h5_bytes(bad)), svc.blob_store, BUCKET, PREFIX, "auto", 0.0, 2
    )
    assert found is None and problems == ["dataset: train_set_y must hold integer class labels 0..K-1"]


def npy(value: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, value, version=version)
    return out.getvalue()


def zipped(members: list[tuple[str, bytes, int]]) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns of a duplicate name, which is the point here
        for name, body, method in members:
            archive.writestr(name, body, method)
    return out.getvalue()


def plain_members(data: dict[str, np.ndarray]) -> list[tuple[str, bytes, int]]:
    return [(f"{key}.npy", npy(value), zipfile.ZIP_STORED) for key, value in data.items()]


@pytest.mark.parametrize("second", ["test_set_x", "test_set_x.npy"])
def test_an_archive_naming_one_array_twice_is_refused_on_both_paths(second: str) -> None:
    """A small member passes the declared-size check while numpy would read its namesake: a member
    declaring 8 MB (a zip bomb, deflated) beside a stored one of a few bytes."""
    svc, data = fake_services(), arrays()
    bomb = (second, npy(np.zeros((2, 4_000_000), np.uint8)), zipfile.ZIP_DEFLATED)
    source = stored_object(svc, "twice.npz", zipped([*plain_members(data), bomb]))
    with pytest.raises(DatasetError, match="dataset key 'test_set_x' appears twice in the archive"):
        read_located(source, svc.blob_store, BUCKET, PREFIX, "auto", 0.0, 2, limit=100_000)
    with pytest.raises(DatasetError, match="dataset key 'test_set_x' appears twice in the archive"):
        load_raw(source, svc.blob_store.read, BUCKET, PREFIX, limit=100_000)


def test_an_npy_header_of_a_version_numpy_does_not_write_is_refused_on_both_paths() -> None:
    svc, data = fake_services(), arrays()
    members = plain_members(data)
    for version in ((1, 0), (2, 0), (3, 0)):  # every version numpy writes is read, by both paths
        members[0] = ("train_set_x.npy", npy(data["train_set_x"], version), zipfile.ZIP_STORED)
        source = stored_object(svc, f"v{version[0]}.npz", zipped(members))
        raw, place = located(svc, source)
        assert raw["train_set_y"].tolist() == data["train_set_y"].tolist() and place.rows == 200
        assert (
            load_raw(source, svc.blob_store.read, BUCKET, PREFIX)["train_set_x"].tobytes()
            == data["train_set_x"].tobytes()
        )
    for index in (0, 2):  # x, whose place the direct path reads; test_set_x, which both read whole
        body = bytearray(npy(data[members[index][0].removesuffix(".npy")], (2, 0)))
        body[6:8] = bytes([9, 9])
        changed = list(plain_members(data))
        changed[index] = (changed[index][0], bytes(body), zipfile.ZIP_STORED)
        source = stored_object(svc, "v9.npz", zipped(changed))
        with pytest.raises(DatasetError, match=r"has \.npy format version 9\.9, not 1\.0, 2\.0 or 3\.0"):
            located(svc, source)
        with pytest.raises(DatasetError, match=r"has \.npy format version 9\.9"):
            load_raw(source, svc.blob_store.read, BUCKET, PREFIX)


class HeadFails:
    """The fake blob store, its HEAD answering an S3 error; its reads as they are."""

    def __init__(self, inner, code: str, status: int) -> None:
        self.inner, self.code, self.status = inner, code, status

    def head(self, bucket: str, key: str):
        from botocore.exceptions import ClientError

        error = {"Error": {"Code": self.code, "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": self.status}}
        raise ClientError(error, "HeadObject")

    def read_range(self, bucket: str, key: str, start: int, stop: int, etag: str) -> bytes:
        return self.inner.read_range(bucket, key, start, stop, etag)


@pytest.mark.parametrize(("code", "status"), [("404", 404), ("NoSuchKey", 404), ("403", 403), ("AccessDenied", 403)])
def test_a_missing_or_forbidden_object_is_left_to_the_whole_read_to_name(code: str, status: int) -> None:
    svc = fake_services()
    source = stored_object(svc, "set.h5", h5_bytes(arrays()))
    objects = HeadFails(svc.blob_store, code, status)
    assert read_located(source, objects, BUCKET, PREFIX, "auto", 0.0, 4) is None
    assert read_checked_located(source, objects, BUCKET, PREFIX, "auto", 0.0, 4) == (None, [])


@pytest.mark.parametrize(("code", "status"), [("SlowDown", 503), ("InternalError", 500), ("Throttling", 400)])
def test_a_head_that_does_not_answer_fails_the_launch_instead_of_choosing_the_path(code: str, status: int) -> None:
    """A throttled HEAD at launch would put the run on the cache path and its resume, whose HEAD
    answers, on the direct one: a different digest, and the resume refused."""
    from botocore.exceptions import ClientError

    svc = fake_services()
    source = stored_object(svc, "set.h5", h5_bytes(arrays()))
    objects = HeadFails(svc.blob_store, code, status)
    with pytest.raises(ClientError, match=code):
        read_located(source, objects, BUCKET, PREFIX, "auto", 0.0, 4)
    with pytest.raises(ClientError, match=code):
        read_checked_located(source, objects, BUCKET, PREFIX, "auto", 0.0, 4)


class ShortAnswers:
    """The fake blob store, its ranged reads answering one byte short."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def head(self, bucket: str, key: str):
        return self.inner.head(bucket, key)

    def read_range(self, bucket: str, key: str, start: int, stop: int, etag: str) -> bytes:
        return self.inner.read_range(bucket, key, start, stop, etag)[:-1]


def test_a_short_ranged_read_names_the_object_and_the_range() -> None:
    svc = fake_services()
    body = npz_bytes(arrays())
    source = stored_object(svc, "set.npz", body)
    objects = ShortAnswers(svc.blob_store)
    pinned = direct.PinnedObject(
        objects, BUCKET, PREFIX + "set.npz", len(body), objects.head(BUCKET, PREFIX + "set.npz")[1]
    )
    with pytest.raises(
        direct.ShortRead,
        match=rf"s3://{BUCKET}/{PREFIX}set\.npz answered {len(body) - 1} bytes for bytes 0\.\.{len(body) - 1}",
    ):
        pinned.read(10)
    with pytest.raises(DatasetError, match=r"unreadable \(ShortRead: s3://fake-bucket/datasets/set\.npz answered"):
        read_located(source, objects, BUCKET, PREFIX, "auto", 0.0, 4)


def test_the_digest_stands_for_the_pinned_object() -> None:
    svc = fake_services()
    raw, place = located(svc, stored_object(svc, "set.h5", h5_bytes(arrays())))
    first = prepare(raw, "auto", "float32", None, place)
    assert "x_train" not in first.arrays()
    changed = arrays()
    changed["train_set_x"][0, 0, 0] ^= 1
    again, moved = located(svc, stored_object(svc, "set.h5", h5_bytes(changed)))
    assert prepare(again, "auto", "float32", None, moved).digest() != first.digest()
    raw, place = located(svc, stored_object(svc, "set.h5", h5_bytes(arrays())))
    assert prepare(raw, "auto", "float32", None, place).digest() == first.digest()


# -- a worker's load -------------------------------------------------------------------------------
def worker_held(svc, dataset, workers: int, block: range, run_id: str | None = None, place: bytes | None = None):
    """Worker 0's load of `block` (the run's config in the cache, as the launch leaves it), under a
    run id of its own (a warm environment keeps configs by run id); `place`: the record's bytes
    instead of the launch's."""
    from trainer import runstart
    from trainer.request import parse

    request, problems = parse(
        {
            "dataset": "s3://x/datasets/x.h5",
            "neurons": {"layer1": 5, "layer2": 3},
            "activations": {"layer1": "relu", "layer2": "softmax"},
            "workers": workers,
            "dtype": "float32",
            "epochs": 1,
            "learning_rate": 0.1,
        }
    )
    assert not problems, problems
    run_id = run_id or f"run-{secrets.token_hex(6)}"
    config = runstart.config_for(request, dataset, run_id)
    data = launching.data_arrays(dataset)
    if place is not None:
        data[launching.SOURCE] = np.frombuffer(place, dtype=np.uint8)
    svc.run_store.create_run(run_id, {}, config.to_json(), config.plan.total_steps)
    svc.run_store.handed_off(run_id)
    svc.tensor_store.create_run(run_id, config.to_json(), {})
    svc.tensor_store.put_data(run_id, data)
    invocation = WorkerInvocation(WorkerEvent(run_id, 0, 0), None, svc)
    if len(block) == 1:  # a micro-shard a worker reads to stand in for a lost one
        return invocation.micro_shard(config, block.start)
    return invocation.load(config, block)


@pytest.mark.parametrize("block", [range(0, 4), range(4, 8), range(15, 16)])
def test_a_worker_reads_the_bits_the_cache_path_gives(block: range) -> None:
    svc = fake_services()
    data = arrays()
    raw, place = located(svc, stored_object(svc, "set.h5", h5_bytes(data)))
    run_id = f"run-{secrets.token_hex(6)}"
    direct_held = worker_held(svc, prepare(raw, "auto", "float32", None, place), 4, block, run_id)
    cached_svc = fake_services()
    cached_held = worker_held(cached_svc, prepare(data, "auto", "float32"), 4, block, run_id)
    assert direct_held.first == cached_held.first == shards.examples_of(200, block)[0]
    assert direct_held.x.tobytes(order="A") == cached_held.x.tobytes(order="A")
    assert direct_held.x.flags.f_contiguous == cached_held.x.flags.f_contiguous
    assert direct_held.y.tobytes() == cached_held.y.tobytes()
    assert svc.tensor_store.has_data(run_id, launching.SOURCE)
    assert not svc.tensor_store.has_data(run_id, launching.x_name(0))
    assert cached_svc.tensor_store.has_data(run_id, launching.x_name(0))


def test_a_worker_meets_a_replaced_object_as_object_changed() -> None:
    svc = fake_services()
    source = stored_object(svc, "set.h5", h5_bytes(arrays()))
    raw, place = located(svc, source)
    dataset = prepare(raw, "auto", "float32", None, place)
    changed = arrays()
    changed["train_set_x"][3] = 0
    stored_object(svc, "set.h5", h5_bytes(changed))
    with pytest.raises(ObjectChanged, match=r"dataset s3://fake-bucket/datasets/set\.h5 changed since the run"):
        worker_held(svc, dataset, 2, range(0, 8))


def tampered(place: direct.Place, **changes) -> bytes:
    return json.dumps(dict(json.loads(place.to_json()), **changes)).encode()


def test_a_tampered_place_record_fails_the_run_naming_the_record() -> None:
    """The cache's record of where the examples lie, changed by someone with the cache's access:
    not JSON, fields of the wrong type, an object outside the configured bucket and prefix, or
    another shape of training set than the run's. No worker reads it; the run fails."""
    svc = fake_services()
    raw, place = located(svc, stored_object(svc, "set.h5", h5_bytes(arrays())))
    dataset = prepare(raw, "auto", "float32", None, place)
    records = {
        "not utf-8": b"\xff\xfe",
        "not json": b"{",
        "etag a number": tampered(place, etag=7),
        "version a list": tampered(place, version_id=["v"]),
        "key a dict": tampered(place, key={"a": 1}),
        "other bucket": tampered(place, bucket="someone-elses"),
        "outside the prefix": tampered(place, key="models/secret.npz"),
        "dot segments": tampered(place, key="datasets/../models/secret.npz"),
        "bucket with a slash": tampered(place, bucket=f"{BUCKET}/datasets", key="set.h5"),
        "more rows": tampered(place, rows=place.rows + 1),
        "wider rows": tampered(place, row_bytes=place.row_bytes * 2),
    }
    for why, record in records.items():
        run_id = f"run-{secrets.token_hex(6)}"
        said = r"ValueError: cache record 'dp_source': the run's record of its training set's place is malformed"
        with pytest.raises(WorkerFailed, match=f"failed the run: {said}"):
            worker_held(svc, dataset, 2, range(0, 8), run_id, record)
        run = svc.run_store.get_run(run_id)
        assert run["status"] == RunStatus.FAILED and re.match(said, run[FAILURE_REASON]), why
        assert svc.tensor_store.has_data(run_id, launching.SOURCE)  # nothing taken away
    held = worker_held(svc, dataset, 2, range(0, 8), place=tampered(place))  # the record as written
    assert held.x.shape == (16, shards.examples_of(200, range(0, 8))[1])
