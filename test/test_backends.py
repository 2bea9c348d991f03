"""Backends on CPU, backend selection on a machine without TensorRT (our control flow when TensorRT or an
engine fails, never a faked TensorRT result) and the ONNX cache under $ROS_HOME/stereo_depth."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ros2_stereo_depth.artifacts import cache, engine_build, engine_spec, onnx_export, tensorrt_env
from ros2_stereo_depth.artifacts.engine_spec import EngineSpec, default_engine_path
from ros2_stereo_depth.artifacts.sidecar import SidecarError, publish, staged
from ros2_stereo_depth.artifacts.weights import load_model
from ros2_stereo_depth.artifacts.tensorrt_env import EngineMismatchError, PlatformInfo, TensorRTError
from ros2_stereo_depth.data.synthetic import SceneParams, SyntheticStereo
from ros2_stereo_depth.inference import select, tensorrt_backend
from ros2_stereo_depth.inference.base import valid_disparity
from ros2_stereo_depth.inference.cuda_runner import GpuNormaliser
from ros2_stereo_depth.inference.select import BackendRequest, create_backend
from ros2_stereo_depth.inference.torch_backend import TorchBackend
from ros2_stereo_depth.normalisation import normalise

NO_TENSORRT = tensorrt_env.tensorrt_unavailable_reason() is not None
ORIN = PlatformInfo("10.3.0.30", "Orin", "8.7", "12.6")


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    sample = SyntheticStereo(SceneParams(height=192, width=256, max_disparity_px=48.0), seed=3)[0]
    return sample.left, sample.right


@pytest.fixture(scope="module")
def ros_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One $ROS_HOME for the module: the tiny ONNX export is cached once and reused."""
    return tmp_path_factory.mktemp("ros_home")


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, ros_home: Path) -> None:
    monkeypatch.setenv("ROS_HOME", str(ros_home))
    monkeypatch.delenv("STEREO_DEPTH_ENGINE_DIR", raising=False)


def _select(**fields: object) -> select.SelectedBackend:
    return create_backend(BackendRequest(config="tiny", threads=2, **fields))  # type: ignore[arg-type]


@pytest.mark.export
def test_torch_cpu_matches_onnxruntime(pair) -> None:
    torch_sel = _select(backend="torch")
    ort_sel = _select(backend="onnxruntime")
    assert (torch_sel.backend.name, torch_sel.backend.device) == ("torch", "cpu")
    assert ort_sel.backend.name == "onnxruntime"
    a = torch_sel.backend.infer(*pair)
    b = ort_sel.backend.infer(*pair)
    assert a.disparity_px.shape == (192, 256)
    assert a.disparity_px.std() > 1.0  # shipped weights: a real disparity map, not a constant
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_runner_graph_replay_matches_plain_runs(pair) -> None:
    """The shared CUDA runner (torch backend): frame 1 plain, then a captured graph replays the same step."""
    model = load_model("tiny")
    plain = TorchBackend(model, 192, 256, device="cuda", precision="fp32")
    graphs = TorchBackend(load_model("tiny"), 192, 256, device="cuda", precision="fp32", cuda_graphs=True)
    reference = plain.infer(*pair).disparity_px
    first = graphs.infer(*pair).disparity_px
    assert graphs.runner is not None and graphs.runner.notes == ["CUDA graph captured"]
    replayed = graphs.infer(pair[1], pair[0]).disparity_px  # other input: the graph reads the new upload
    # cudnn.benchmark may time different kernels for the two backends (TF32 rounding: ~1e-3 px); a
    # stale or misordered replay is off by pixels.
    assert np.abs(first - reference).max() < 0.01
    assert np.abs(replayed - plain.infer(pair[1], pair[0]).disparity_px).max() < 0.01


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_graph_backend_matches_the_unfolded_network_on_cpu(pair) -> None:
    """What the node runs on a GPU (batch norms folded, fp16 autocast, cuDNN's timed kernels, a graph)
    against the plain fp32 network on the CPU: the same disparities to a fraction of a pixel."""
    model = load_model("fast", height=192, width=256)
    with torch.inference_mode():
        out = model.net(torch.from_numpy(normalise(pair[0])), torch.from_numpy(normalise(pair[1])))
    reference = out["disparity"][0, 0].numpy()
    cuda = TorchBackend(load_model("fast", height=192, width=256), 192, 256, device="cuda", precision="fp16",
                        cuda_graphs=True)
    for _ in range(3):
        disparity = cuda.infer(*pair).disparity_px
    error = np.abs(disparity - reference)
    assert cuda.runner is not None and cuda.runner.notes == ["CUDA graph captured"]
    assert float(np.median(error)) < 0.05 and float(np.percentile(error, 99)) < 0.5


COMMAND = "build the engine on the target with: stereo-depth build-engine --config tiny --height 192 --width 256 --max-disparity 64 " \
          "--precision fp16 --workspace-mib 4096 --output "


@pytest.mark.export
@pytest.mark.skipif(not NO_TENSORRT, reason="TensorRT present")
def test_auto_without_tensorrt_picks_onnxruntime(tmp_path: Path) -> None:
    engine = tmp_path / "tiny.engine"
    selected = _select(backend="auto", engine_path=str(engine))
    assert selected.backend.name == "onnxruntime"
    assert selected.reason.startswith("auto: TensorRT not used: ")
    assert selected.reason.endswith(COMMAND + str(engine)) and "\n" not in selected.reason
    assert selected.describe().startswith("backend onnxruntime on cpu, input 256x192, max disparity 64 px")


@pytest.mark.skipif(not NO_TENSORRT, reason="TensorRT present")
@pytest.mark.parametrize("build", [False, True])
def test_explicit_tensorrt_without_tensorrt_fails_with_the_command(tmp_path: Path, build: bool) -> None:
    engine = tmp_path / "tiny.engine"
    with pytest.raises(TensorRTError) as error:
        _select(backend="tensorrt", engine_path=str(engine), build_engine_if_missing=build)
    message = str(error.value)
    assert message.startswith("backend tensorrt is not possible: ")
    assert message.endswith(COMMAND + str(engine)) and "\n" not in message
    assert not engine.exists()


def _engine_with_sidecar(path: Path, **overrides: object) -> Path:
    """Arbitrary bytes with a sidecar that matches the request: our checks pass, TensorRT never runs."""
    meta = {"tensorrt_version": ORIN.tensorrt_version, "gpu_name": ORIN.gpu_name,
            "compute_capability": ORIN.compute_capability, "config": "tiny", "input_height": 192, "input_width": 256,
            "max_disparity": 64, "precision": "fp16", "dla_core": None,
            "weights_sha256": select.resolve_weights("tiny").weights_sha256, **overrides}
    with staged(path) as tmp:
        tmp.write_bytes(b"not an engine")
        publish(tmp, path, "engine", meta)
    return path


def _raise(error: Exception):  # noqa: ANN202 - a stand-in for one of OUR functions that fails
    def fail(*args: object, **kwargs: object) -> None:
        raise error
    return fail


# Each way TensorRT can fail after it is found usable, produced by OUR functions raising OUR error types.
FAILURES = {
    "engine does not deserialise": ("backend", EngineMismatchError(
        "TensorRT 10.3.0.30 could not deserialize e.engine (rebuild on this machine)", "cmd"),
        "EngineMismatchError: TensorRT 10.3.0.30 could not deserialize e.engine (rebuild on this machine)"),
    "build fails": ("build", TensorRTError("TensorRT failed to build the engine (see its log above)"),
                    "TensorRTError: TensorRT failed to build the engine"),
    "int8 on TensorRT 11": ("build", ValueError("INT8 with a strongly typed network (TensorRT 11, or --strongly-typed)"
                                                " needs an explicitly quantised (Q/DQ) ONNX graph"),
                            "ValueError: INT8 with a strongly typed network"),
    "unreadable sidecar": ("problems", SidecarError("e.json: unreadable sidecar (Expecting value)"),
                           "SidecarError: e.json: unreadable sidecar"),
    "stale engine": ("stale", None, "engine has max_disparity=128, wanted 64"),
}


@pytest.mark.export
@pytest.mark.parametrize("backend", ["auto", "tensorrt"])
@pytest.mark.parametrize("failure", list(FAILURES))
def test_tensorrt_failures_fall_back_or_fail_with_one_line(monkeypatch, tmp_path: Path, backend: str,
                                                           failure: str) -> None:
    where, error, cause = FAILURES[failure]
    engine = _engine_with_sidecar(tmp_path / "tiny.engine", max_disparity=128 if where == "stale" else 64)
    monkeypatch.setattr(tensorrt_env, "tensorrt_unavailable_reason", lambda: None)
    monkeypatch.setattr(tensorrt_env, "current_platform", lambda device=0: ORIN)
    monkeypatch.setattr(tensorrt_backend, "TensorRTBackend", _raise(error) if where == "backend" else
                        _raise(AssertionError("TensorRT must not be reached")))
    monkeypatch.setattr(engine_build, "build", _raise(error) if where == "build" else
                        _raise(AssertionError("no build was asked for")))
    if where == "build":
        engine.unlink()  # missing: build_engine_if_missing builds
    if where == "problems":
        monkeypatch.setattr(engine_spec, "engine_problems", _raise(error))
    request = {"engine_path": str(engine), "build_engine_if_missing": where == "build"}
    if backend == "tensorrt":
        with pytest.raises(TensorRTError) as raised:
            _select(backend="tensorrt", **request)
        line = str(raised.value)
        assert line.startswith("backend tensorrt is not possible: ")
    else:
        selected = _select(backend="auto", **request)
        assert selected.backend.name == "onnxruntime"
        line = selected.reason
        assert line.startswith("auto: TensorRT not used: ")
    assert "\n" not in line
    assert cause in line
    assert line.endswith(COMMAND + str(engine))


def test_dla_core_below_minus_one_is_refused() -> None:
    with pytest.raises(ValueError, match="dla_core must be -1"):
        _select(backend="auto", dla_core=-2)


def test_default_engine_path(monkeypatch, tmp_path) -> None:
    # Not relative to the working directory: `ros2 launch` starts the node wherever the user is.
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "roshome"))
    assert default_engine_path(EngineSpec("fast", 480, 640, 128, "fp16")) == tmp_path / "roshome/stereo_depth/engines/fast_640x480_d128_fp16.engine"
    monkeypatch.delenv("ROS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_engine_path(EngineSpec("fast", 480, 640, 128, "int8", dla_core=0)) == tmp_path / ".ros/stereo_depth/engines/fast_640x480_d128_int8_dla0.engine"
    monkeypatch.setenv("STEREO_DEPTH_ENGINE_DIR", str(tmp_path / "mine"))
    assert default_engine_path(EngineSpec("tiny", 192, 256, 64, "fp32")) == tmp_path / "mine/tiny_256x192_d64_fp32.engine"


@pytest.mark.parametrize("min_disparity, min_confidence, expected", [
    (0.0, 0.0, [False, False, False, True, True, True]),  # NaN and 0 are not above 0; confidence ignored
    (0.0, 0.5, [False, False, False, False, True, True]),  # 0.2 < 0.5; 0.5 itself is kept
    (2.0, 0.0, [False, False, False, False, False, True]),
])
def test_valid_disparity_is_the_node_rule(min_disparity, min_confidence, expected) -> None:
    disparity = np.array([np.nan, -1.0, 0.0, 0.5, 2.0, 3.0], np.float32)
    confidence = np.array([1.0, 1.0, 1.0, 0.2, 0.5, np.float32(0.9)], np.float32)
    valid = valid_disparity(disparity, confidence, min_disparity, min_confidence)
    assert valid.dtype == bool and valid.tolist() == expected


def test_backend_search_range_wider_than_the_config_width(pair) -> None:
    """The native evaluation path: a backend at a wide input with a search range above the config's
    default width (tiny: 256) runs and searches that range."""
    selected = create_backend(BackendRequest(backend="torch", config="tiny", height=192, width=384,
                                             max_disparity=320))
    assert (selected.backend.height, selected.backend.width, selected.backend.max_disparity) == (192, 384, 320)
    left, right = (np.ascontiguousarray(np.pad(image, ((0, 0), (0, 128), (0, 0)), mode="edge"))
                   for image in pair)
    result = selected.backend.infer(left, right)
    assert result.disparity_px.shape == (192, 384)
    assert 0.0 <= float(result.disparity_px.min()) and float(result.disparity_px.max()) <= 320.0


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="not one of"):
        create_backend(BackendRequest(backend="tflite"))


@pytest.mark.export
def test_onnx_cache_warm_start(monkeypatch, tmp_path: Path, pair) -> None:
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "home"))
    exports: list[Path] = []
    real_export = onnx_export.export_onnx

    def counting_export(*args: object, **kwargs: object) -> Path:
        exports.append(Path(str(args[1])))
        return real_export(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(onnx_export, "export_onnx", counting_export)
    cold = _select(backend="onnxruntime")
    assert len(exports) == 1 and exports[0].parent == tmp_path / "home/stereo_depth/onnx"
    mtime = exports[0].stat().st_mtime_ns
    start = time.perf_counter()
    warm = _select(backend="onnxruntime")
    warm_s = time.perf_counter() - start
    assert len(exports) == 1 and exports[0].stat().st_mtime_ns >= mtime  # no second export; the hit marks it used
    assert warm_s < 1.0, f"warm start took {warm_s:.2f} s"
    assert np.array_equal(cold.backend.infer(*pair).disparity_px, warm.backend.infer(*pair).disparity_px)
    # Only the graph and its sidecar: no temporary file left behind.
    assert sorted(p.name for p in exports[0].parent.iterdir()) == [exports[0].with_suffix(".json").name,
                                                                     exports[0].name]
    # Another search range is another graph: exported again, under another key.
    _select(backend="onnxruntime", max_disparity=32)
    assert len(exports) == 2 and exports[1] != exports[0]
    # A modified cached graph fails its sidecar check and is exported again.
    exports[0].write_bytes(exports[0].read_bytes() + b"\0")
    _select(backend="onnxruntime")
    assert len(exports) == 3 and exports[2] == exports[0]


WARM_START = """
import sys, numpy as np
import ros2_stereo_depth.ros.node  # everything the node process imports
from ros2_stereo_depth.inference.select import BackendRequest, create_backend
selected = create_backend(BackendRequest(backend="auto", config="tiny", threads=1))
left, right = (np.load(sys.argv[1])[k] for k in ("left", "right"))
np.save(sys.argv[2], selected.backend.infer(left, right).disparity_px)
print(selected.backend.name, "torch" in sys.modules, "onnx" in sys.modules)
"""


@pytest.mark.export
def test_warm_onnxruntime_start_imports_no_torch(tmp_path: Path, pair) -> None:
    """A node on a cached graph does not pay torch's ~200 MiB: only the first start (the export) imports it,
    and both starts give the same disparity. The process imports the node module as the node does."""
    import subprocess
    import sys

    np.savez(tmp_path / "pair.npz", left=pair[0], right=pair[1])
    env = {**os.environ, "ROS_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    runs = [subprocess.run([sys.executable, "-c", WARM_START, str(tmp_path / "pair.npz"), str(tmp_path / f"{i}.npy")],
                           env=env, capture_output=True, text=True, timeout=300) for i in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr[-2000:] + runs[1].stderr[-2000:]
    assert runs[0].stdout.split() == ["onnxruntime", "True", "True"]  # cold: exported with torch
    assert runs[1].stdout.split() == ["onnxruntime", "False", "False"]  # warm: neither torch nor onnx
    cold, warm = np.load(tmp_path / "0.npy"), np.load(tmp_path / "1.npy")
    assert cold.shape == (192, 256) and np.array_equal(cold, warm)


def test_onnx_cache_keeps_the_most_recently_used_graphs_of_a_slot(tmp_path: Path) -> None:
    """Other weights for the same config, size, range and precision replace the oldest graphs of that slot
    (with their sidecars); other slots and the graph just written are never touched."""
    def graph(name: str, key: str, used_s: int) -> Path:
        path = tmp_path / f"{name}_{key * 24}.onnx"
        path.write_bytes(b"graph")
        path.with_suffix(".json").write_text("{}")
        os.utime(path, (used_s, used_s))
        return path

    slot = "fast_640x480_d128_fp32"
    old, older, oldest = graph(slot, "a", 300), graph(slot, "b", 200), graph(slot, "c", 100)
    other_range, other_size = graph("fast_640x480_d64_fp32", "d", 50), graph("fast_320x256_d128_fp32", "e", 50)
    new = graph(slot, "f", 10)  # just exported, whatever its time stamp
    removed = cache.prune_slot(new)
    assert cache.KEEP_PER_SLOT == 2 and sorted(removed) == sorted([older, oldest])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        n for p in (old, other_range, other_size, new) for n in (p.name, p.with_suffix(".json").name))
    assert cache.prune_slot(new) == []  # nothing more to remove


def test_onnx_cache_key_changes_with_each_input() -> None:
    base = {"weights_sha256": "a" * 64, "architecture": {"name": "tiny", "groups": 4}, "height": 192, "width": 256,
            "max_disparity": 64, "precision": "fp32"}
    changed = [{"weights_sha256": "b" * 64}, {"architecture": {"name": "tiny", "groups": 8}}, {"height": 224},
               {"width": 288}, {"max_disparity": 32}, {"precision": "fp16"}]
    keys = {cache.onnx_cache_key(**base)} | {cache.onnx_cache_key(**{**base, **c}) for c in changed}  # type: ignore[arg-type]
    assert len(keys) == 1 + len(changed)
    assert cache.onnx_cache_key(**base) == cache.onnx_cache_key(**dict(base))  # type: ignore[arg-type]


@pytest.mark.export
def test_random_weights_leave_no_temporary_files(monkeypatch, tmp_path: Path) -> None:
    """The accurate config has no shipped weights: exported to a temporary folder that is removed."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "home"))
    selected = create_backend(BackendRequest(backend="onnxruntime", config="accurate", height=64, width=192,
                                             threads=2))
    assert not selected.weights.trained
    assert selected.backend.infer(*(np.zeros((64, 192, 3), np.uint8),) * 2).disparity_px.shape == (64, 192)
    assert os.listdir(temp) == []
    assert not (tmp_path / "home").exists()  # random weights are never cached
