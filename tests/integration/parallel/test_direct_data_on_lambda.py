"""Data-parallel runs whose workers read their micro-shards straight from the dataset object in S3
(trainer/data/direct.py): on an uncompressed uint8 .h5 or .npz, LaunchLambda leaves the training
examples in the object (it writes only their place, pinned to the object's ETag, and the labels'
micro-shards to the cache), each worker reads its block with one ranged GET, and the run ends
bit-identical to the same request on the cache path (the same set, gzip-compressed in the file) and
to the reference. A dataset object replaced after the launch fails the run with a reason naming
it; a run whose cache was lost resumes on the recorded place again."""

from __future__ import annotations

import io
import secrets
from pathlib import Path

import h5py
import numpy as np
import pytest
from botocore.exceptions import ClientError

from tests.support.cloud import aws, invoke, wait_for_status
from trainer import model_file
from trainer.data.loader import prepare
from trainer.local.cloud_runner import session_services
from trainer.local.provision import provision_stack
from trainer.nn.init import initialise
from trainer.parallel import launching, reference, shards

REQUEST = {
    "neurons": {"layer1": 16, "layer2": 10},
    "activations": {"layer1": "relu", "layer2": "softmax"},
    "epochs": 3,
    "learning_rate": 0.05,
    "optimizer": "adam",
    "batch_size": 400,
    "dtype": "float32",
}


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(26)
    return {
        "train_set_x": rng.integers(0, 256, (1_600, 8, 8), dtype=np.uint8),
        "train_set_y": rng.integers(0, 10, 1_600),
        "test_set_x": rng.integers(0, 256, (200, 8, 8), dtype=np.uint8),
        "test_set_y": rng.integers(0, 10, 200),
    }


def h5_bytes(data: dict[str, np.ndarray], **options: str) -> bytes:
    out = io.BytesIO()
    with h5py.File(out, "w") as handle:
        for key, value in data.items():
            handle.create_dataset(key, data=value, **options)
    return out.getvalue()


def npz_bytes(data: dict[str, np.ndarray]) -> bytes:
    out = io.BytesIO()
    np.savez(out, **data)  # stored members, not deflated
    return out.getvalue()


FILES = {
    "direct.h5": lambda d: h5_bytes(d),
    "direct.npz": npz_bytes,
    "cached.h5": lambda d: h5_bytes(d, compression="gzip"),  # chunked and deflated: the cache path
}


@pytest.fixture(scope="module")
def stack(cloud_env) -> dict:
    return provision_stack("dpd" + secrets.token_hex(3), trainer_memory_mb=1024)


@pytest.fixture(scope="module")
def services(cloud, stack):
    return session_services(stack, str(Path(cloud.workdir) / "elasticache-ca.pem"))


@pytest.fixture(scope="module")
def uploaded(cloud_env, stack) -> dict[str, str]:
    data, s3 = arrays(), aws("s3", cloud_env)
    uris = {}
    for name, build in FILES.items():
        body = build(data)
        s3.put_object(Bucket=stack["MODEL_BUCKET"], Key=f"datasets/{name}", Body=body)
        uris[name] = f"s3://{stack['MODEL_BUCKET']}/datasets/{name}"
    return uris


def data_names(services, run_id: str) -> set[str]:
    """The run's data entries in the cache (keys lnn:{RUN}:data:NAME)."""
    names = (k.decode().split(":") for k in services.tensor_store.run_keys(run_id))
    return {parts[3] for parts in names if parts[2] == "data"}


def launch_held(cloud, cloud_env, stack: dict, services, payload: dict) -> set[str]:
    """Launch with the workers' events held: the cache as the launch left it, before any worker."""
    cloud.hold(stack["TRAINER_FUNCTION_NAME"])
    try:
        resp, body = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], payload)
        assert "FunctionError" not in resp, body
        return data_names(services, payload["run_id"])
    finally:
        cloud.hold(stack["TRAINER_FUNCTION_NAME"], on=False)


def model_params(cloud_env, stack: dict, run_id: str) -> dict[str, np.ndarray]:
    blob = aws("s3", cloud_env).get_object(Bucket=stack["MODEL_BUCKET"], Key=f"models/{run_id}/model.npz")
    return model_file.load(blob["Body"].read())[1]


def expected(workers: int) -> tuple[dict[str, np.ndarray], list[float]]:
    ds = prepare(arrays(), "auto", "float32")
    params = initialise([64, 16, 10], "scaled_normal", 1, "float32")
    got, costs, _, _ = reference.train(
        ds.x_train, ds.y_train, params, ["relu", "softmax"], 3, 0.05, "adam", 0.0, 400, 1, workers=workers
    )
    return got, costs


def bits(params: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {k: v.tobytes() for k, v in params.items()}


LABELS = {launching.y_name(k) for k in range(shards.MICRO_SHARDS)}
SHARDS = {launching.x_name(k) for k in range(shards.MICRO_SHARDS)} | LABELS
FINISH = {"x_test", "y_test", "shift", "scale"}


def test_workers_read_an_uncompressed_uint8_set_from_the_object_and_end_as_the_cache_path(
    cloud, cloud_env, stack, services, uploaded
) -> None:
    variants = {"direct.h5": 2, "direct.npz": 4, "cached.h5": 2}
    launched = {}
    for name, workers in variants.items():
        payload = {**REQUEST, "dataset": uploaded[name], "workers": workers, "run_id": f"dpd-{secrets.token_hex(3)}"}
        launched[name] = (payload, launch_held(cloud, cloud_env, stack, services, payload))
    # The launch wrote the examples' place and the labels' micro-shards, no example's values; the
    # compressed file went through the cache as before.
    assert launched["direct.h5"][1] == LABELS | FINISH | {launching.SOURCE}
    assert launched["direct.npz"][1] == LABELS | FINISH | {launching.SOURCE}
    assert launched["cached.h5"][1] == SHARDS | FINISH
    results = {}
    for name, (payload, _) in launched.items():
        item = wait_for_status(cloud_env, stack["TABLE_NAME"], payload["run_id"], 300)
        assert item["status"] == "SUCCEEDED", (name, item)
        results[name] = (item, model_params(cloud_env, stack, payload["run_id"]))
    direct_h5, direct_npz, cached = (results[n] for n in variants)
    assert bits(direct_h5[1]) == bits(cached[1]) == bits(direct_npz[1])  # bit-identical for any N, either path
    for key in ("final_cost", "train_accuracy", "test_accuracy"):
        assert direct_h5[0][key] == cached[0][key] == direct_npz[0][key], key
    want, costs = expected(2)
    assert bits(direct_h5[1]) == bits(want)
    assert float(direct_h5[0]["final_cost"]) == costs[-1]


def test_a_dataset_replaced_after_the_launch_fails_the_run_naming_it(
    cloud, cloud_env, stack, services, uploaded
) -> None:
    """The workers' ranged reads are pinned to the ETag the launch read: S3 answers 412, and the run
    is FAILED with a reason that names the dataset, no model written."""
    body = h5_bytes(arrays())
    key = f"datasets/replaced-{secrets.token_hex(3)}.h5"
    s3 = aws("s3", cloud_env)
    s3.put_object(Bucket=stack["MODEL_BUCKET"], Key=key, Body=body)
    payload = {**REQUEST, "dataset": f"s3://{stack['MODEL_BUCKET']}/{key}", "workers": 2}
    payload["run_id"] = f"dpx-{secrets.token_hex(3)}"
    cloud.hold(stack["TRAINER_FUNCTION_NAME"])
    try:
        resp, answer = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], payload)
        assert "FunctionError" not in resp, answer
        assert launching.SOURCE in data_names(services, payload["run_id"])
        changed = arrays()
        changed["train_set_x"][0, 0, 0] ^= 1  # one bit of one example
        s3.put_object(Bucket=stack["MODEL_BUCKET"], Key=key, Body=h5_bytes(changed))
    finally:
        cloud.hold(stack["TRAINER_FUNCTION_NAME"], on=False)
    item = wait_for_status(cloud_env, stack["TABLE_NAME"], payload["run_id"], 120)
    assert item["status"] == "FAILED", item
    reason = item["failure_reason"]
    assert reason.startswith("ObjectChanged: dataset s3://") and key in reason, reason
    assert "changed since the run was launched" in reason, reason
    listed = s3.list_objects_v2(Bucket=stack["MODEL_BUCKET"], Prefix=f"models/{payload['run_id']}/")
    assert listed.get("KeyCount", 0) == 0


def test_a_run_whose_cache_was_lost_resumes_on_the_recorded_place(cloud, cloud_env, stack, services, uploaded) -> None:
    """The cache node replaced before any worker ran: the run fails (cache lost), and its resume
    records the examples' place again (no example's values go to the cache) and ends as the
    reference."""
    payload = {**REQUEST, "dataset": uploaded["direct.h5"], "workers": 2, "run_id": f"dpl-{secrets.token_hex(3)}"}
    cloud.hold(stack["TRAINER_FUNCTION_NAME"])
    try:
        resp, answer = invoke(cloud_env, stack["LAUNCH_FUNCTION_NAME"], payload)
        assert "FunctionError" not in resp, answer
        cloud.replace_node(stack["REPLICATION_GROUP_ID"])  # same address, empty memory
    finally:
        cloud.hold(stack["TRAINER_FUNCTION_NAME"], on=False)
    item = wait_for_status(cloud_env, stack["TABLE_NAME"], payload["run_id"], 120)
    assert item["status"] == "FAILED", item
    cloud.wait_idle(timeout_s=30)
    cloud.hold(stack["TRAINER_FUNCTION_NAME"])
    try:
        resp, answer = invoke(
            cloud_env, stack["LAUNCH_FUNCTION_NAME"], {"action": "resume", "run_id": payload["run_id"]}
        )
        assert "FunctionError" not in resp, answer
        assert data_names(services, payload["run_id"]) == LABELS | FINISH | {launching.SOURCE}
    finally:
        cloud.hold(stack["TRAINER_FUNCTION_NAME"], on=False)
    item = wait_for_status(cloud_env, stack["TABLE_NAME"], payload["run_id"], 300)
    assert item["status"] == "SUCCEEDED", item
    want, costs = expected(2)
    assert bits(model_params(cloud_env, stack, payload["run_id"])) == bits(want)
    assert float(item["final_cost"]) == costs[-1]


def test_the_local_clouds_ranged_gets_answer_as_s3s(cloud_env, stack) -> None:
    """The local cloud serves a ranged GetObject from the range's bytes (trainer/local/moto_patched.py,
    patch 10): the same answers as moto's own (and S3's), a range, a suffix, past the end, If-Match."""
    body = np.random.default_rng(3).integers(0, 256, 3_000_000, dtype=np.uint8).tobytes()
    s3, key = aws("s3", cloud_env), f"datasets/ranges-{secrets.token_hex(3)}.bin"
    etag = s3.put_object(Bucket=stack["MODEL_BUCKET"], Key=key, Body=body)["ETag"]

    def get(spec: str, match: str = etag) -> tuple[bytes, str]:
        answer = s3.get_object(Bucket=stack["MODEL_BUCKET"], Key=key, Range=spec, IfMatch=match)
        return answer["Body"].read(), answer["ContentRange"]

    assert get("bytes=1000-1999") == (body[1000:2000], "bytes 1000-1999/3000000")
    assert get("bytes=2999990-") == (body[2999990:], "bytes 2999990-2999999/3000000")
    assert get("bytes=-5") == (body[-5:], "bytes 2999995-2999999/3000000")
    assert get("bytes=2999000-9999999") == (body[2999000:], "bytes 2999000-2999999/3000000")
    assert s3.get_object(Bucket=stack["MODEL_BUCKET"], Key=key)["Body"].read() == body
    with pytest.raises(ClientError) as past:
        get("bytes=3000000-3000001")
    assert past.value.response["Error"]["Code"] == "InvalidRange"
    with pytest.raises(ClientError) as changed:
        get("bytes=0-9", match='"0123456789abcdef0123456789abcdef"')
    assert changed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
