"""ONNX Runtime on the CPU: which SessionOptions, whether int8, and where the time goes (issue 11).

- Session options: every variant's latency is measured in ONE process with the sessions' runs
  interleaved round by round, so a load change on a shared machine hits all variants alike; each
  variant's peak RSS comes from a fresh process of its own (spawned: numpy + onnxruntime only).
- int8: onnxruntime.quantization dynamic (weights int8, activations quantised at run time) and static
  (QDQ, per-channel weights, activations calibrated on synthetic scenes, not on Aloe); latency in the
  same interleaved run, accuracy on Aloe (dense bad-2) against the fp32 model.
- Profile: ORT's own profiler; node times summed per op type, with 3D / 2D convolutions apart, and the
  most expensive nodes by name (the exporter names nodes after the PyTorch modules).
"""
from __future__ import annotations

import json
import multiprocessing
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

# name -> SessionOptions fields / config entries. "default" is ORT's own default (what main had).
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "opt_disable_all": {"graph_optimization_level": "ORT_DISABLE_ALL"},
    "opt_basic": {"graph_optimization_level": "ORT_ENABLE_BASIC"},
    "opt_extended": {"graph_optimization_level": "ORT_ENABLE_EXTENDED"},
    "threads_1": {"intra_op_num_threads": 1},
    "threads_2": {"intra_op_num_threads": 2},
    "threads_2_no_spin": {"intra_op_num_threads": 2, "session.intra_op.allow_spinning": "0"},
    "threads_1_no_spin": {"intra_op_num_threads": 1, "session.intra_op.allow_spinning": "0"},
    "no_spin": {"session.intra_op.allow_spinning": "0"},  # what onnxruntime_backend.py ships
    "parallel_inter_2": {"execution_mode": "ORT_PARALLEL", "inter_op_num_threads": 2},
    "no_cpu_arena": {"enable_cpu_mem_arena": False},
    "no_mem_pattern": {"enable_mem_pattern": False},
    "no_arena_no_pattern": {"enable_cpu_mem_arena": False, "enable_mem_pattern": False},
}


def session_options(settings: dict[str, Any]) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    for key, value in settings.items():
        if key == "graph_optimization_level":
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, value)
        elif key == "execution_mode":
            options.execution_mode = getattr(ort.ExecutionMode, value)
        elif "." in key:
            options.add_session_config_entry(key, str(value))
        else:
            setattr(options, key, value)
    return options


def export_model(config: str, size: tuple[int, int], max_disparity: int, directory: Path) -> Path:
    """The fp32 ONNX of a shipped config at `size` (the node's export, same sidecar)."""
    from ..artifacts.onnx_export import export_onnx
    from ..artifacts.weights import load_model

    path = directory / f"{config}_{size[0]}x{size[1]}_d{max_disparity}.onnx"
    export_onnx(load_model(config, None, max_disparity, height=size[1], width=size[0]), path, size[1], size[0])
    return path


def network_inputs(size: tuple[int, int], count: int = 2) -> list[dict[str, np.ndarray]]:
    from ..data.synthetic import SceneParams, SyntheticSequence
    from ..normalisation import normalise

    sequence = SyntheticSequence(SceneParams(size[1], size[0], 0.2 * size[0]), seed=11)
    return [{"left": normalise(f.left), "right": normalise(f.right)} for f in (sequence.frame(i) for i in range(count))]


def interleaved_latency(sessions: dict[str, Any], inputs: list[dict[str, np.ndarray]], rounds: int,
                        warmup: int = 2) -> dict[str, dict[str, float]]:
    """Median and p95 ms per session; each round runs every session once, in a rotating order."""
    names = list(sessions)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            feed = inputs[r % len(inputs)]
            start = time.perf_counter()
            sessions[name].run(None, feed)
            if r >= warmup:
                samples[name].append(time.perf_counter() - start)
    return {n: {"p50_ms": float(np.median(s) * 1e3), "p95_ms": float(np.percentile(s, 95) * 1e3)}
            for n, s in samples.items()}


def vm_hwm_mib() -> float:
    """This process's peak RSS since its exec (getrusage's ru_maxrss survives exec on Linux, so a spawned
    child would report its parent's peak)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM in /proc/self/status")


def _rss_child(path: str, settings: dict[str, Any], size: tuple[int, int], queue: Any) -> None:
    import onnxruntime as ort

    before = vm_hwm_mib()
    session = ort.InferenceSession(path, session_options(settings), providers=["CPUExecutionProvider"])
    feed = {"left": np.zeros((1, 3, size[1], size[0]), np.float32), "right": np.zeros((1, 3, size[1], size[0]), np.float32)}
    for _ in range(3):
        session.run(None, feed)
    after = vm_hwm_mib()
    queue.put({"peak_rss_mib": after, "session_rss_mib": after - before})


def peak_rss(path: Path, settings: dict[str, Any], size: tuple[int, int]) -> dict[str, float]:
    """Peak RSS of a fresh process that loads numpy + onnxruntime and runs the model 3 times; also the
    part of it added by the session (after minus before creating it)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_rss_child, args=(str(path), settings, size, queue))
    process.start()
    result = queue.get(timeout=600)
    process.join()
    return result


def quantise(path: Path, kind: str, size: tuple[int, int]) -> Path:
    """int8 copy of the model: kind dynamic or static (QDQ, calibrated on 8 synthetic pairs)."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    output = path.with_name(path.stem + f"_int8_{kind}.onnx")
    prepared = path.with_name(path.stem + "_prep.onnx")
    if not prepared.is_file():
        quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
    if kind == "dynamic":
        quantize_dynamic(str(prepared), str(output), weight_type=QuantType.QInt8)
    else:
        feeds = network_inputs(size, 8)

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = iter(feeds)

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self.items, None)

        quantize_static(str(prepared), str(output), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    shutil.copy(path.with_suffix(".json"), output.with_suffix(".json"))  # the backend reads max_disparity there
    return output


def aloe_bad2_of(path: Path, settings: dict[str, Any]) -> float:
    """Dense bad-2 on Aloe of an ONNX model run as the node runs it."""
    from ..inference.onnxruntime_backend import OnnxRuntimeBackend
    from ..inference.base import infer_at_image_size
    from .speed_chart import dense_bad2, load_aloe

    left, right, gt, valid = load_aloe()
    backend = OnnxRuntimeBackend(path)
    result = infer_at_image_size(backend, left, right)
    return dense_bad2(result.disparity_px, np.ones(gt.shape, bool), gt, valid)


def profile(path: Path, inputs: list[dict[str, np.ndarray]], runs: int = 5) -> dict[str, Any]:
    """Per op type and per node: share of the summed node time over `runs` runs (after one warm-up)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    rank = {}  # a Conv's kind from its weight's rank: 5 = 3D
    initialisers = {i.name: len(i.dims) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            rank[node.name] = initialisers.get(node.input[1], 4)
    options = ort.SessionOptions()
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run(None, inputs[0])
        start_ns = time.perf_counter_ns()
        for i in range(runs):
            session.run(None, inputs[i % len(inputs)])
        wall_ms = (time.perf_counter_ns() - start_ns) / 1e6 / runs
        events = json.loads(Path(session.end_profiling()).read_text())
    runs_seen = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    measured = runs_seen[1:]  # the first model_run is the warm-up
    first_ts = measured[0]["ts"] if measured else 0
    by_type: dict[str, float] = defaultdict(float)
    by_node: dict[str, float] = defaultdict(float)
    by_module: dict[str, float] = defaultdict(float)  # /net/<part>/<block>: what the lead edits in model/
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time") or e["ts"] < first_ts:
            continue
        node = e["name"][: -len("_kernel_time")]
        op = e["args"].get("op_name", "?")
        if op in ("Conv", "ConvTranspose", "FusedConv"):
            op = f"{op} {'3D' if rank.get(node, rank.get(node.rsplit('_', 1)[0], 4)) == 5 else '2D'}"
        by_type[op] += e["dur"]
        by_node[f"{node} ({op})"] += e["dur"]
        by_module["/".join(node.split("/")[:4]) if node.startswith("/net/") else "(other)"] += e["dur"]
    total = sum(by_type.values())
    return {"runs": runs, "wall_ms_per_run": wall_ms, "node_ms_per_run": total / 1e3 / runs,
            "op_types": sorted(((k, 100.0 * v / total) for k, v in by_type.items()), key=lambda kv: -kv[1]),
            "modules": sorted(((k, 100.0 * v / total) for k, v in by_module.items()), key=lambda kv: -kv[1]),
            "top_nodes": sorted(((k, 100.0 * v / total, v / 1e3 / runs) for k, v in by_node.items()),
                                key=lambda kv: -kv[1])[:15]}


def study(config: str, sizes: list[tuple[int, int]], rounds: int, variants: dict[str, dict[str, Any]] = VARIANTS,
          quantisation: bool = True, profile_size: tuple[int, int] | None = (640, 480)) -> dict[str, Any]:
    import onnxruntime as ort

    from ..config import get_config
    from .speed import search_range

    multiple = get_config(config).size_multiple
    report: dict[str, Any] = {"config": config, "rounds": rounds, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            d = search_range(size[0], multiple)
            path = export_model(config, size, d, Path(tmp))
            inputs = network_inputs(size)
            entry: dict[str, Any] = {"max_disparity": d}
            models = {name: (path, settings) for name, settings in variants.items()}
            if quantisation:
                for kind in ("dynamic", "static"):
                    try:
                        models[f"int8_{kind}"] = (quantise(path, kind, size), {})
                    except Exception as error:  # noqa: BLE001 - report why the variant is missing
                        entry[f"int8_{kind}_error"] = f"{type(error).__name__}: {error}"
            sessions, failed = {}, {}
            for name, (model_path, settings) in models.items():
                try:
                    sessions[name] = ort.InferenceSession(str(model_path), session_options(settings),
                                                          providers=["CPUExecutionProvider"])
                except Exception as error:  # noqa: BLE001
                    failed[name] = f"{type(error).__name__}: {error}"
            entry["failed"] = failed
            entry["latency"] = interleaved_latency(sessions, inputs, rounds)
            del sessions
            entry["rss"] = {name: peak_rss(models[name][0], models[name][1], size) for name in entry["latency"]}
            entry["aloe_bad2"] = {name: aloe_bad2_of(models[name][0], {}) for name in ("default", "int8_dynamic", "int8_static")
                                  if name in entry["latency"]}
            if profile_size == size:
                entry["profile"] = profile(path, inputs)
            report["sizes"][f"{size[0]}x{size[1]}"] = entry
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = [f"`{report['config']}`, {report['rounds']} interleaved rounds per variant (median ms; x default = "
             "ratio to ORT's defaults in the same run); peak RSS of a fresh numpy+onnxruntime process.", ""]
    for size, entry in report["sizes"].items():
        base = entry["latency"]["default"]["p50_ms"]
        lines += [f"#### {size}, {entry['max_disparity']} disparities", "",
                  "| variant | median ms | p95 ms | x default | peak RSS MiB | session RSS MiB | Aloe bad-2 % |",
                  "|---|---|---|---|---|---|---|"]
        for name, lat in entry["latency"].items():
            rss = entry["rss"].get(name, {})
            bad2 = entry["aloe_bad2"].get(name)
            lines.append(f"| {name} | {lat['p50_ms']:.1f} | {lat['p95_ms']:.1f} | {lat['p50_ms'] / base:.2f} | "
                         f"{rss.get('peak_rss_mib', float('nan')):.0f} | {rss.get('session_rss_mib', float('nan')):.0f} | "
                         f"{'' if bad2 is None else f'{bad2:.1f}'} |")
        for name, error in {**entry["failed"], **{k: v for k, v in entry.items() if k.endswith("_error")}}.items():
            lines.append(f"| {name} | failed: {' '.join(error.split())[:200].replace('|', '/')} | | | | | |")
        if "profile" in entry:
            p = entry["profile"]
            lines += ["", f"ORT profile at {size}: {p['node_ms_per_run']:.0f} ms of node time per run "
                      f"({p['wall_ms_per_run']:.0f} ms wall) over {p['runs']} runs.", "",
                      "| op type | share % |", "|---|---|"]
            lines += [f"| {op} | {share:.1f} |" for op, share in p["op_types"] if share >= 0.5]
            lines += ["", "| module | share % |", "|---|---|"]
            lines += [f"| `{module}` | {share:.1f} |" for module, share in p["modules"] if share >= 0.5]
            lines += ["", "| node (op) | share % | ms per run |", "|---|---|---|"]
            lines += [f"| `{node}` | {share:.1f} | {ms:.1f} |" for node, share, ms in p["top_nodes"]]
        lines.append("")
    return "\n".join(lines)
