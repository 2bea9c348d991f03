"""Backends on CPU and backend selection on a machine without TensorRT."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ros2_stereo_depth.data.synthetic import SceneParams, SyntheticStereo
from ros2_stereo_depth.normalisation import normalise
from ros2_stereo_depth.inference.select import BackendRequest, create_backend, default_engine_path
from ros2_stereo_depth.inference.tensorrt_backend import EngineSpec, tensorrt_unavailable_reason
from ros2_stereo_depth.inference.torch_backend import GpuNormaliser

torch.set_num_threads(2)
NO_TENSORRT = tensorrt_unavailable_reason() is not None


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    sample = SyntheticStereo(SceneParams(height=192, width=256, max_disparity_px=48.0), seed=3)[0]
    return sample.left, sample.right


def _select(**fields: object) -> object:
    torch.manual_seed(0)  # without shipped weights both backends must get the same random net
    return create_backend(BackendRequest(config="tiny", threads=2, **fields))  # type: ignore[arg-type]


def test_torch_cpu_matches_onnxruntime(pair) -> None:
    torch_sel = _select(backend="torch")
    ort_sel = _select(backend="onnxruntime")
    assert (torch_sel.backend.name, torch_sel.backend.device) == ("torch", "cpu")
    assert ort_sel.backend.name == "onnxruntime"
    a = torch_sel.backend.infer(*pair)
    b = ort_sel.backend.infer(*pair)
    assert a.disparity_px.shape == (192, 256)
    assert np.abs(a.disparity_px - b.disparity_px).max() < 1e-3
    assert np.abs(a.confidence - b.confidence).max() < 1e-4


def test_gpu_normalisation_matches_numpy(pair) -> None:
    # The same code runs on CUDA in the tensorrt/torch backends; on CPU it checks the arithmetic.
    normaliser = GpuNormaliser(192, 256, torch.device("cpu"))
    normaliser.upload(*pair)
    out = torch.empty(1, 3, 192, 256)
    normaliser.normalise_into(1, out)
    assert np.abs(out.numpy() - normalise(pair[1])).max() < 1e-5
    with pytest.raises(ValueError, match="256x192 uint8"):
        normaliser.upload(pair[0][:, :128], pair[1])


@pytest.mark.skipif(not NO_TENSORRT, reason="TensorRT present")
def test_auto_without_tensorrt_picks_onnxruntime(tmp_path: Path) -> None:
    selected = _select(backend="auto", engine_path=str(tmp_path / "tiny.engine"))
    assert selected.backend.name == "onnxruntime"
    assert "auto: TensorRT not used" in selected.reason
    assert selected.describe().startswith("backend onnxruntime on cpu, input 256x192")


@pytest.mark.skipif(not NO_TENSORRT, reason="TensorRT present")
@pytest.mark.parametrize("build", [False, True])
def test_explicit_tensorrt_without_tensorrt_fails_with_the_command(tmp_path: Path, build: bool) -> None:
    engine = tmp_path / "tiny.engine"
    with pytest.raises(RuntimeError) as error:
        _select(backend="tensorrt", engine_path=str(engine), build_engine_if_missing=build)
    message = str(error.value)
    assert "backend tensorrt is not possible" in message
    assert (f"stereo-depth build-engine --config tiny --height 192 --width 256 --max-disparity 64 "
            f"--precision fp16 --output {engine}") in message
    assert not engine.exists()


def test_default_engine_path(monkeypatch, tmp_path) -> None:
    # Not relative to the working directory: `ros2 launch` starts the node wherever the user is.
    monkeypatch.delenv("STEREO_DEPTH_ENGINE_DIR", raising=False)
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "roshome"))
    assert default_engine_path(EngineSpec("fast", 480, 640, 192, "fp16")) == tmp_path / "roshome/stereo_depth/engines/fast_640x480_d192_fp16.engine"
    monkeypatch.delenv("ROS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_engine_path(EngineSpec("fast", 480, 640, 192, "int8", dla_core=0)) == tmp_path / ".ros/stereo_depth/engines/fast_640x480_d192_int8_dla0.engine"
    monkeypatch.setenv("STEREO_DEPTH_ENGINE_DIR", str(tmp_path / "mine"))
    assert default_engine_path(EngineSpec("tiny", 192, 256, 64, "fp32")) == tmp_path / "mine/tiny_256x192_d64_fp32.engine"


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="not one of"):
        create_backend(BackendRequest(backend="tflite"))
