"""Security rules that need no server: the tensor codec refuses what is not plain numbers, and no
module of trainer/ imports pickle (the rest: tests/integration/chain/test_security.py)."""

from __future__ import annotations

import ast
import json
import pickle

import numpy as np
import pytest

from tests.support.paths import REPO_ROOT
from trainer.stores import codec
from trainer.stores.codec import CodecError

TRAINER_DIR = REPO_ROOT / "trainer"


def test_codec_refuses_object_dtypes_and_wrong_lengths():
    good = codec.encode(np.arange(6, dtype=np.float64).reshape(2, 3))
    assert np.array_equal(codec.decode(good), np.arange(6, dtype=np.float64).reshape(2, 3))

    def forged(dtype: str, shape: list[int], body: bytes) -> bytes:
        header = json.dumps({"dtype": dtype, "shape": shape}).encode()
        return codec.MAGIC + len(header).to_bytes(2, "little") + header + body

    for dtype in ("|O", "O", "<U4", "|V8", "object", "<M8[s]"):
        with pytest.raises(CodecError):
            codec.decode(forged(dtype, [1], b"\0" * 8))
    with pytest.raises(CodecError, match="bytes"):
        codec.decode(forged("<f8", [2, 3], b"\0" * 47))
    with pytest.raises(CodecError, match="bytes"):
        codec.decode(forged("<f8", [2, 3], b"\0" * 49))
    with pytest.raises(CodecError):
        codec.decode(forged("<f8", [-1, 6], b"\0" * 48))
    with pytest.raises(CodecError):
        codec.decode(pickle.dumps(np.zeros(3)))
    with pytest.raises(CodecError):
        codec.decode(good[:5])
    with pytest.raises(CodecError):
        codec.encode(np.array([object()], dtype=object))


_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "jsonpickle"}


def test_no_module_imports_pickle_or_allows_it():
    offenders = []
    files = sorted(TRAINER_DIR.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                names = []
            offenders += [f"{path}:{node.lineno} imports {n}" for n in names if n in _PICKLE_MODULES]
            if (
                isinstance(node, ast.keyword)
                and node.arg in ("allow_pickle", "fix_imports")
                and not (isinstance(node.value, ast.Constant) and node.value.value is False)
            ):
                offenders.append(f"{path}:{node.value.lineno} passes {node.arg}={ast.unparse(node.value)}")
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("np.load", "numpy.load"):
                given = {k.arg: k.value for k in node.keywords}
                value = given.get("allow_pickle")
                if not (isinstance(value, ast.Constant) and value.value is False):
                    offenders.append(f"{path}:{node.lineno} calls np.load without allow_pickle=False")
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("loads", "load")
                and isinstance(node.value, ast.Name)
                and node.value.id in _PICKLE_MODULES
            ):
                offenders.append(f"{path}:{node.lineno} calls {node.value.id}.{node.attr}")
        assert "allow_pickle=True" not in path.read_text().replace(" ", ""), path
    assert not offenders, "\n".join(offenders)
