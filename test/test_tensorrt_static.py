"""TensorRT code checked without TensorRT: mypy against tensorrt-stubs, commands, sidecar checks and
build-engine's behaviour on a machine without TensorRT. Nothing here fakes a TensorRT result."""
from __future__ import annotations

import ast
import importlib.util
import json
import keyword
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ros2_stereo_depth import cli
from ros2_stereo_depth.artifacts import calibrator
from ros2_stereo_depth.artifacts.engine_build import layers_not_fp32, onnx_precision, resolve_strongly_typed
from ros2_stereo_depth.artifacts.engine_spec import (EngineSpec, calibration_cache_path,
                                                     engine_problems, fp32_layer_names, rebuild_command,
                                                     timing_cache_path, trtexec_command)
from ros2_stereo_depth.artifacts.sidecar import publish, sidecar_path, staged
from ros2_stereo_depth.artifacts.tensorrt_env import (EngineMismatchError, PlatformInfo, default_strongly_typed,
                                                      tensorrt_unavailable_reason)
from ros2_stereo_depth.inference.tensorrt_backend import TensorRTBackend

ROOT = Path(__file__).resolve().parents[1]
SPEC = EngineSpec(config="tiny", height=192, width=256, max_disparity=64, precision="fp16", weights_sha256=None)


def _fix_signature(line: str) -> str:
    """Repair one pybind11-stubgen signature: a parameter named after a keyword (`in`) and
    parameters without a default after one with a default are syntax errors in tensorrt-stubs."""
    match = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*:\s*)$", line)
    if not match:
        return line
    head, params, tail = match.groups()
    parts, depth, current = [], 0, ""
    for ch in params:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    fixed, seen_default = [], False
    for part in parts:
        name = part.strip().split(":")[0].split("=")[0].strip()
        if keyword.iskeyword(name):
            part = part.replace(name, name + "_", 1)
        if "=" in part:
            seen_default = True
        elif seen_default and name and not name.startswith("*"):
            part += " = ..."
        fixed.append(part)
    return head + ",".join(fixed) + tail


def parseable_stubs(out: Path) -> Path:
    """tensorrt-stubs 10.13's generated tensorrt_bindings/tensorrt.pyi has a few lines Python cannot
    parse, which stops mypy. Copy the stubs, repairing only those lines; everything else is verbatim."""
    spec = importlib.util.find_spec("tensorrt_stubs")
    assert spec is not None and spec.origin, "pip install --no-deps tensorrt-stubs (see constraints.txt)"
    site = Path(spec.origin).parent.parent
    for package in ("tensorrt", "tensorrt_bindings"):
        for source in (site / package).glob("*.pyi"):
            lines = source.read_text().splitlines()
            for _ in range(500):
                try:
                    ast.parse("\n".join(lines))
                    break
                except SyntaxError as error:
                    index = (error.lineno or 1) - 1
                    repaired = _fix_signature(lines[index])
                    assert repaired != lines[index], f"cannot repair {source}:{error.lineno}: {error.msg}"
                    lines[index] = repaired
            target = out / package / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="module")
def mypy_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    stubs = parseable_stubs(tmp_path_factory.mktemp("trt_stubs"))
    return {**os.environ, "MYPYPATH": str(stubs)}


def _mypy(env: dict[str, str], cache: Path, *files: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", str(cache),
                           *files], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_mypy_strict_on_tensorrt_code(mypy_env: dict[str, str], tmp_path: Path) -> None:
    result = _mypy(mypy_env, tmp_path / "cache")  # files: from mypy.ini
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues found in 9 source files" in result.stdout


def test_mypy_really_sees_the_tensorrt_api(mypy_env: dict[str, str], tmp_path: Path) -> None:
    """Negative control: misuse of the TensorRT API must be reported (the stubs are not Any)."""
    bad = tmp_path / "bad_trt.py"
    bad.write_text("import tensorrt as trt\n"
                   "def f(config: trt.IBuilderConfig) -> None:\n"
                   "    config.set_flag(trt.BuilderFlag.FP17)\n"
                   "    config.set_memory_pool_limit('workspace', 1 << 30)\n")
    result = _mypy(mypy_env, tmp_path / "cache", str(bad))
    assert result.returncode == 1
    assert '"FP17"' in result.stdout and "set_memory_pool_limit" in result.stdout


def test_no_tensorrt_here_is_detected() -> None:
    # tensorrt-stubs make `import tensorrt` succeed as an empty namespace package: not a runtime.
    if importlib.util.find_spec("tensorrt") is not None and tensorrt_unavailable_reason() is None:
        pytest.skip("TensorRT and a GPU are present")
    assert tensorrt_unavailable_reason() is not None


def test_commands() -> None:
    command = rebuild_command(SPEC, "engines/tiny.engine")
    assert command == ("stereo-depth build-engine --config tiny --height 192 --width 256 --max-disparity 64 "
                       "--precision fp16 --workspace-mib 4096 --output engines/tiny.engine")
    # The sidecar's command reproduces the build exactly: workspace and typing included.
    exact = EngineSpec("fast", 480, 640, 128, "fp16", workspace_mib=8192, strongly_typed=True, dla_core=0)
    assert rebuild_command(exact, "f.engine") == (
        "stereo-depth build-engine --config fast --height 480 --width 640 --max-disparity 128 --precision fp16 "
        "--workspace-mib 8192 --strongly-typed --dla-core 0 --output f.engine")
    assert "--weakly-typed" in rebuild_command(EngineSpec("fast", 480, 640, 128, "int8", strongly_typed=False), "e")
    layers = ["/net/regression/Softmax", "/net/Resize"]
    weak = trtexec_command("m.onnx", "e.engine", SPEC, strongly_typed=False, fp32_layers=layers)
    assert "--fp16" in weak and "--stronglyTyped" not in weak
    assert "--layerPrecisions=/net/regression/Softmax:fp32,/net/Resize:fp32" in weak
    strong = trtexec_command("m.onnx", "e.engine", SPEC, strongly_typed=True)
    assert "--stronglyTyped" in strong and "--fp16" not in strong
    dla = trtexec_command("m.onnx", "e.engine", EngineSpec("fast", 480, 640, 192, "int8", dla_core=1), False,
                          calibration_cache="calibration/0123.calib")
    assert "--int8" in dla and "--useDLACore=1" in dla and "--allowGPUFallback" in dla
    assert "--calib=calibration/0123.calib" in dla


def test_dla_core_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="--dla-core must be >= 0, not -1"):
        EngineSpec("fast", 480, 640, 128, "fp16", dla_core=-1)
    with pytest.raises(SystemExit):  # argparse: --dla-core takes an integer
        cli.main(["build-engine", "--config", "tiny", "--dla-core", "zero"])


def test_strongly_typed_by_default_from_10_12() -> None:
    assert default_strongly_typed("10.13.0.35", "fp16") and default_strongly_typed("11.1.0", "fp32")
    assert not default_strongly_typed("10.3.0.30", "fp16")  # JetPack 6: weak typing is still the way
    assert not default_strongly_typed("10.13.0.35", "int8")  # calibration needs a weakly typed network
    # Without TensorRT the printed line is the weakly typed 10.x one, unless the user chose.
    assert resolve_strongly_typed(SPEC, tensorrt_present=False) is False
    assert resolve_strongly_typed(EngineSpec("tiny", 192, 256, 64, strongly_typed=True), False) is True


def test_timing_and_calibration_caches_are_keyed(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STEREO_DEPTH_ENGINE_DIR", str(tmp_path))
    orin = PlatformInfo("10.3.0.30", "Orin (nvgpu)", "8.7", "12.6")
    nano = PlatformInfo("10.3.0.30", "Orin Nano", "8.7", "12.6")
    newer = PlatformInfo("10.13.0.35", "Orin (nvgpu)", "8.7", "12.6")
    paths = {timing_cache_path(p) for p in (orin, nano, newer)}
    assert len(paths) == 3 and all(p.parent == tmp_path / "timing" for p in paths)
    assert timing_cache_path(orin).name == "10.3.0.30_Orin-nvgpu.cache"
    # INT8 scales follow the graph (weights, size, range), not the engine name.
    engine = tmp_path / "fast_640x480_d128_int8.engine"
    a, b = calibration_cache_path(engine, "a" * 64), calibration_cache_path(engine, "b" * 64)
    assert a != b and a == tmp_path / "calibration" / ("a" * 16 + ".calib")
    assert calibration_cache_path(tmp_path / "other.engine", "a" * 64) == a
    assert calibrator.read_calibration_cache(a) is None  # None, not b"": TensorRT must calibrate
    calibrator.write_calibration_cache(a, b"scales")
    assert calibrator.read_calibration_cache(a) == b"scales"
    assert sorted(p.name for p in a.parent.iterdir()) == [a.name]  # no temporary file left


def test_inspector_check_finds_reduced_precision_in_pinned_layers() -> None:
    """Our reading of the engine inspector's JSON (LayerInformationFormat.JSON, DETAILED verbosity)."""
    info = {"Layers": [
        {"Name": "/net/aggregation/Conv", "Outputs": [{"Name": "a", "Format/Datatype": "Channel major FP16 format"}]},
        {"Name": "/net/regression/Softmax", "Outputs": [{"Name": "s", "Format/Datatype": "Row major linear FP32"}]},
        {"Name": "/net/refinement/Conv + /net/refinement/Relu",
         "Outputs": [{"Name": "r", "Format/Datatype": "Channel major FP16 format where channel % 2 == 0"}]},
        "/net/Resize",  # names-only inspector output: nothing to check
    ]}
    pinned = ["/net/regression/Softmax", "/net/refinement/Relu", "/net/Resize"]
    assert layers_not_fp32(info, pinned) == [
        "/net/refinement/Conv + /net/refinement/Relu: Channel major FP16 format where channel % 2 == 0"]
    assert layers_not_fp32(info, ["/net/regression/Softmax"]) == []


def test_fp32_layers_start_at_the_regression() -> None:
    names = ["/net/regression/Constant", "/net/features/Conv", "/net/aggregation/Conv",
             "/net/regression/Softmax", "/net/regression/Mul", "/net/refinement/Conv", "/net/Resize"]
    assert fp32_layer_names(names) == names[3:]


def test_strongly_typed_int8_needs_qdq() -> None:
    assert onnx_precision("fp16", strongly_typed=True) == "fp16"
    assert onnx_precision("fp16", strongly_typed=False) == "fp32"
    with pytest.raises(ValueError, match="Q/DQ"):
        onnx_precision("int8", strongly_typed=True)


def _fake_engine(tmp_path: Path, **overrides: object) -> Path:
    """Arbitrary bytes plus a sidecar: exercises our integrity checks, not TensorRT."""
    engine = tmp_path / "tiny.engine"
    meta = {"tensorrt_version": "10.13.0.35", "compute_capability": "8.7", "gpu_name": "Orin",
            "config": "tiny", "input_height": 192, "input_width": 256, "max_disparity": 64, "precision": "fp16",
            "weights_sha256": None, "dla_core": None, "rebuild_command": rebuild_command(SPEC, engine)}
    meta.update(overrides)
    with staged(engine) as tmp:
        tmp.write_bytes(b"not a real engine" * 64)
        publish(tmp, engine, "engine", meta)
    return engine


def test_a_failed_build_leaves_no_engine_without_sidecar(monkeypatch, tmp_path: Path) -> None:
    engine = tmp_path / "e.engine"
    with pytest.raises(RuntimeError, match="build failed"):
        with staged(engine) as tmp:
            tmp.write_bytes(b"half an engine")
            raise RuntimeError("build failed")
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone, nothing was published
    # A crash between the two renames leaves a sidecar without an engine (refused: not found), never the reverse.
    renamed: list[str] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        renamed.append(Path(dst).name)
        if Path(dst).suffix == ".engine":
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        with staged(engine) as tmp:
            tmp.write_bytes(b"an engine")
            publish(tmp, engine, "engine", {})
    assert renamed == ["e.json", "e.engine"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json"]
    assert engine_problems(engine) == [f"engine {engine} not found"]


def test_engine_checks(tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path)
    orin = PlatformInfo("10.13.0.35", "Orin", "8.7", "12.6")
    assert engine_problems(engine, SPEC, orin) == []
    problems = engine_problems(engine, SPEC, PlatformInfo("10.3.0.30", "RTX 4090", "8.9", "12.4"))
    assert any("TensorRT 10.13.0.35, running 10.3.0.30" in p for p in problems)
    assert any("compute capability 8.7" in p for p in problems)
    # Same compute capability, another GPU model (an AGX Orin engine on an Orin Nano): refused too.
    problems = engine_problems(engine, SPEC, PlatformInfo("10.13.0.35", "Orin Nano", "8.7", "12.6"))
    assert problems == ["engine built on a Orin, this GPU is a Orin Nano"]
    # An engine for a DLA core is not the GPU engine that was asked for, and the other way round.
    dla = EngineSpec("tiny", 192, 256, 64, "fp16", dla_core=0)
    assert engine_problems(engine, dla, orin) == ["engine has dla_core=None, wanted 0"]
    problems = engine_problems(engine, EngineSpec("tiny", 192, 256, 64, "fp32"), orin)
    assert problems == ["engine has precision='fp16', wanted 'fp32'"]
    sidecar_path(engine).write_text("{not json")
    assert "unreadable sidecar" in engine_problems(engine)[0]
    _fake_engine(tmp_path)
    engine.write_bytes(engine.read_bytes() + b"\0")
    assert any("does not match its sidecar" in p for p in engine_problems(engine))
    assert engine_problems(tmp_path / "missing.engine") == [f"engine {tmp_path / 'missing.engine'} not found"]
    engine.with_suffix(".json").unlink()
    assert "no sidecar" in engine_problems(engine)[0]


def test_backend_refuses_an_engine_whose_sha_differs(tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path)
    engine.write_bytes(b"another file")
    with pytest.raises(EngineMismatchError, match="does not match its sidecar") as error:
        TensorRTBackend(engine, SPEC)
    assert "stereo-depth build-engine --config tiny" in str(error.value)


def test_build_engine_without_tensorrt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exports and checks the ONNX graph, prints trtexec, then fails clearly (no engine is faked)."""
    if tensorrt_unavailable_reason() is None:
        pytest.skip("TensorRT is present: a real build would run")
    output = tmp_path / "engines" / "tiny.engine"
    code = cli.main(["build-engine", "--config", "tiny", "--precision", "fp16", "--output", str(output)])
    out, err = capsys.readouterr()
    assert code == 2
    assert not output.exists()
    onnx_path = output.with_name("tiny-model.onnx")
    assert onnx_path.is_file() and json.loads(onnx_path.with_suffix(".json").read_text())["precision"] == "fp32"
    assert "exported and checked" in out
    assert f"trtexec --onnx={onnx_path} --saveEngine={output}" in out and "--fp16" in out
    assert "/net/regression/Softmax:fp32" in out
    assert "cannot build a TensorRT engine here" in err
    assert f"--precision fp16 --workspace-mib 4096 --output {output}" in err
    assert sorted(p.name for p in output.parent.iterdir()) == ["tiny-model.json", "tiny-model.onnx"]  # no temp files


def test_readme_engine_is_the_one_the_node_looks_for(monkeypatch, tmp_path: Path) -> None:
    """The first build-engine command in the README writes exactly the engine the node, with its default
    parameters, looks for; the README's trtexec check loads that file."""
    from ros2_stereo_depth.inference.select import BackendRequest, create_backend
    from ros2_stereo_depth.ros.node import PARAMETERS
    from ros2_stereo_depth.tools.args import load_model_from_args
    from ros2_stereo_depth.tools.build_engine import spec_and_output

    monkeypatch.setenv("ROS_HOME", str(tmp_path))
    monkeypatch.delenv("STEREO_DEPTH_ENGINE_DIR", raising=False)
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Building an engine"):readme.index("## Training and evaluation")]
    first = next(line for line in section.splitlines() if line.startswith("stereo-depth build-engine"))
    args = cli.build_parser("build-engine").parse_args(shlex.split(first)[1:])
    _, readme_engine = spec_and_output(args, load_model_from_args(args))
    assert readme_engine == tmp_path / "stereo_depth/engines/fast_640x480_d128_fp16.engine"
    assert f"--loadEngine=$HOME/.ros/stereo_depth/engines/{readme_engine.name}" in section

    node = {name: p.default for name, p in PARAMETERS.items()}
    request = BackendRequest(backend="tensorrt", config=node["config"], weights=node["weights"],
                             height=node["input_height"], width=node["input_width"],
                             max_disparity=node["max_disparity"], engine_path=node["engine_path"],
                             precision=node["precision"], dla_core=node["dla_core"])
    with pytest.raises(RuntimeError) as error:  # no TensorRT here; with TensorRT: no engine in tmp_path
        create_backend(request)
    assert str(error.value).endswith(f"--output {readme_engine}")
