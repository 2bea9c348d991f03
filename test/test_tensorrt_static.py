"""TensorRT code checked without TensorRT: mypy against tensorrt-stubs, commands, sidecar checks and
build-engine's behaviour on a machine without TensorRT. Nothing here fakes a TensorRT result."""
from __future__ import annotations

import ast
import importlib.util
import json
import keyword
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ros2_stereo_depth import cli
from ros2_stereo_depth.inference.tensorrt_backend import (EngineMismatchError, EngineSpec, PlatformInfo,
                                                          TensorRTBackend, engine_problems, fp32_layer_names,
                                                          rebuild_command, tensorrt_unavailable_reason,
                                                          trtexec_command)
from ros2_stereo_depth.tools.build_engine import onnx_precision
from ros2_stereo_depth.weights import sha256_file

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
    assert "no issues found in 3 source files" in result.stdout


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
                       "--precision fp16 --output engines/tiny.engine")
    layers = ["/net/regression/Softmax", "/net/Resize"]
    weak = trtexec_command("m.onnx", "e.engine", SPEC, strongly_typed=False, fp32_layers=layers)
    assert "--fp16" in weak and "--stronglyTyped" not in weak
    assert "--layerPrecisions=/net/regression/Softmax:fp32,/net/Resize:fp32" in weak
    strong = trtexec_command("m.onnx", "e.engine", SPEC, strongly_typed=True)
    assert "--stronglyTyped" in strong and "--fp16" not in strong
    dla = trtexec_command("m.onnx", "e.engine", EngineSpec("fast", 480, 640, 192, "int8", dla_core=1), False)
    assert "--int8" in dla and "--useDLACore=1" in dla and "--allowGPUFallback" in dla and "--calib=e.calib" in dla


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
    engine.write_bytes(b"not a real engine" * 64)
    meta = {"tensorrt_version": "10.13.0.35", "compute_capability": "8.7", "gpu_name": "Orin",
            "config": "tiny", "input_height": 192, "input_width": 256, "max_disparity": 64, "precision": "fp16",
            "weights_sha256": None, "engine_sha256": sha256_file(engine), "rebuild_command": rebuild_command(SPEC, engine)}
    meta.update(overrides)
    engine.with_suffix(".json").write_text(json.dumps(meta))
    return engine


def test_engine_checks(tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path)
    orin = PlatformInfo("10.13.0.35", "Orin", "8.7", "12.6")
    assert engine_problems(engine, SPEC, orin) == []
    problems = engine_problems(engine, SPEC, PlatformInfo("10.3.0.30", "RTX 4090", "8.9", "12.4"))
    assert any("TensorRT 10.13.0.35, running 10.3.0.30" in p for p in problems)
    assert any("compute capability 8.7" in p for p in problems)
    problems = engine_problems(engine, EngineSpec("tiny", 192, 256, 64, "fp32"), orin)
    assert problems == ["engine has precision='fp16', wanted 'fp32'"]
    engine.write_bytes(engine.read_bytes() + b"\0")
    assert any("does not match its sidecar" in p for p in engine_problems(engine))
    assert engine_problems(tmp_path / "missing.engine") == [f"engine {tmp_path / 'missing.engine'} not found"]
    engine.with_suffix(".json").unlink()
    assert "no sidecar" in engine_problems(engine)[0]


def test_backend_refuses_an_engine_whose_sha_differs(tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path, engine_sha256="0" * 64)
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
    assert f"--precision fp16 --output {output}" in err
