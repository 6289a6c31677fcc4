"""The model server example (examples/model-server): its train.py writes the same model file
on every machine, the app contract pins that file's sha256, and compose.yaml mounts the
release's artifacts read-only. Standard library and PyYAML only: nothing here needs NumPy or
Docker.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
APP_DIR = REPO / "examples/model-server"
spec = importlib.util.spec_from_file_location("app_manifest", REPO / "roles/app/filter_plugins/app_manifest.py")
app_manifest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app_manifest)

MANIFEST = yaml.safe_load((APP_DIR / "shipshape.yml").read_text())
HEADER = b"{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"


def train(out: Path) -> bytes:
    proc = subprocess.run([sys.executable, str(APP_DIR / "train.py"), str(out)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert proc.stdout == f"sha256 {hashlib.sha256(data).hexdigest()}  {out}\n"
    return data


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> bytes:
    return train(tmp_path_factory.mktemp("model") / "artifacts/model.npy")


def weights(data: bytes) -> tuple[float, float, float]:
    header_len = struct.unpack("<H", data[8:10])[0]
    return struct.unpack("<3d", data[10 + header_len:])


def test_train_writes_the_same_bytes_every_time(model, tmp_path):
    assert train(tmp_path / "model.npy") == model


def test_the_manifest_pins_the_model_train_writes(model):
    assert MANIFEST["artifacts"] == [{"name": "model.npy", "sha256": hashlib.sha256(model).hexdigest()}]


def test_the_manifest_keeps_the_contract():
    result = app_manifest.app_manifest((APP_DIR / "shipshape.yml").read_text())
    assert result["errors"] == []
    assert result["manifest"]["preset"] == "none"
    assert result["manifest"]["stateful"] == {"files": []}
    # The URL is the inventory's: the same commit can fetch its model from another server.
    assert app_manifest.app_artifacts(MANIFEST["artifacts"], {})["errors"][0].startswith(
        "the artifact model.npy has no URL")


def test_the_model_is_a_npy_file_of_three_float64(model):
    assert model[:8] == b"\x93NUMPY\x01\x00"
    header_len = struct.unpack("<H", model[8:10])[0]
    header = model[10:10 + header_len]
    assert header.endswith(b"\n") and header[:-1].rstrip(b" ") == HEADER
    assert (10 + header_len) % 64 == 0
    assert len(model) == 10 + header_len + 3 * 8
    assert all(math.isfinite(w) for w in weights(model))


@pytest.mark.parametrize("features, label, probability", [
    ([1.0, 1.0], 1, 0.9966),
    ([0.0, 0.0], 0, 0.0374),
    ([0.2, 0.6], 1, 0.7343),
    ([0.9, 0.1], 0, 0.4567),
])
def test_the_model_gives_its_known_answers(model, features, label, probability):
    """The answers of POST /predict: the sigmoid of w1*x1 + w2*x2 + b, rounded to 4 decimals."""
    w1, w2, b = weights(model)
    p = round(1 / (1 + math.exp(-(w1 * features[0] + w2 * features[1] + b))), 4)
    assert (int(p >= 0.5), p) == (label, probability)


def test_compose_mounts_the_artifacts_read_only():
    compose = yaml.safe_load((APP_DIR / "compose.yaml").read_text())
    assert set(compose["services"]) == {MANIFEST["web"]["service"]}
    web = compose["services"]["web"]
    assert web["volumes"] == ["./artifacts:/models:ro"]
    assert web["environment"]["MODEL_PATH"] == "/models/" + MANIFEST["artifacts"][0]["name"]
    assert web["ports"] == ["127.0.0.1:${APP_PORT:-8000}:8000"]
    assert web["image"].startswith("${APP_IMAGE") and web["build"]["args"]["BASE_IMAGE"].startswith("${BASE_IMAGE")
    assert web["environment"]["APP_VERSION"] == "${APP_VERSION:-}" and web["env_file"] == ".env"
    assert web["read_only"] is True and web["cap_drop"] == ["ALL"]
    assert web["security_opt"] == ["no-new-privileges:true"]
    assert f"127.0.0.1:8000{MANIFEST['web']['health_path']}" in web["healthcheck"]["test"][-1]
    assert "networks" not in compose


def test_the_model_stays_out_of_git_and_of_the_image():
    ignored = (APP_DIR / ".gitignore").read_text().split()
    assert {"model.npy", "artifacts/", ".env"} <= set(ignored)
    assert {"model.npy", "artifacts", ".env"} <= set((APP_DIR / ".dockerignore").read_text().split())


def test_env_example_requires_no_key():
    lines = (APP_DIR / ".env.example").read_text().splitlines()
    assert [line for line in lines if line and not line.startswith("#")] == []
