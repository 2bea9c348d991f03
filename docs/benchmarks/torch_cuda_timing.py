"""Torch CUDA backend timings (BENCHMARKS.md *GPU*): the node's TorchBackend as shipped against the one of
2b835ea (unfolded network under fp16 autocast, cuDNN heuristics) and the one of f79d412 (folded, fp16
split, NCHW layout), a few candidates, a per-part split with CUDA events and a kernel profile. Random 640x480 rgb8 pair, 10 warm-up calls, medians of 200.
Run on a CUDA machine from the repository root (no ROS needed):
    PYTHONPATH=$PWD python3 docs/benchmarks/torch_cuda_timing.py timings.json
The node's own figures on a GPU machine with the ROS wheels: `stereo-depth bench --backends torch`."""
import copy, json, sys, time
import numpy as np, torch
import ros2_stereo_depth.inference.torch_backend as tb
from ros2_stereo_depth.model.deploy import fold_batchnorm, half_precision_net
from ros2_stereo_depth.artifacts.weights import load_model, save_weights
from ros2_stereo_depth.config import get_config
from ros2_stereo_depth.model import StereoNet

out_path = sys.argv[1]
rows, notes = [], {}
rng = np.random.default_rng(0)


def pair(h, w):
    left = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return left, np.ascontiguousarray(np.roll(left, -20, axis=1))


def safe(fn, *args, **kw):
    import traceback
    try:
        return fn(*args, **kw)
    except Exception:
        traceback.print_exc()
        notes.setdefault("errors", []).append(f"{fn.__name__}{args}: {traceback.format_exc()[-400:]}")


def emit(row):
    print(json.dumps(row), flush=True)
    rows.append(row)
    json.dump({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
               "cudnn": torch.backends.cudnn.version(), "rows": rows, "notes": notes},
              open(out_path, "w"), indent=1)


class Before(tb.TorchBackend):
    """The backend as of 2b835ea: the unfolded net under fp16 autocast, cuDNN's heuristics."""

    def _inference_copy(self, net):
        return net

    def _forward(self, inputs):
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.precision == "fp16"):
            out = self.inference_net(*(inputs[name] for name in tb.INPUT_NAMES))
        return {name: out[name] for name in tb.OUTPUT_NAMES}


class Nchw(tb.TorchBackend):
    """The backend as of f79d412: folded, the fp16 split, cuDNN's timed kernels, tensors left NCHW."""

    def _inference_copy(self, net):
        folded = fold_batchnorm(net)
        return half_precision_net(folded) if self.precision == "fp16" else folded


class Autocast(Before):
    """The first call's candidate: folded, autocast, cudnn.benchmark."""

    def _inference_copy(self, net):
        return fold_batchnorm(net)


def build(name, h, w, variant, precision="fp16", graphs=True, weights=None):
    cls = {"before": Before, "autocast": Autocast, "nchw": Nchw}.get(variant, tb.TorchBackend)
    b = cls(load_model(name, weights, height=h, width=w), h, w, device="cuda", precision=precision,
            cuda_graphs=graphs)
    torch.backends.cudnn.benchmark = variant != "before"
    if variant == "compile":
        b.inference_net = torch.compile(b.inference_net, dynamic=False)
    return b


def timed(b, left, right, n=200):
    for _ in range(10):
        r = b.infer(left, right)
    t = []
    for _ in range(n):
        s = time.perf_counter(); r = b.infer(left, right); t.append(time.perf_counter() - s)
    ms = np.array(t) * 1e3
    return float(np.median(ms)), float(np.percentile(ms, 95)), float(r.disparity_px.mean())


def measure(name, h, w, variant, precision="fp16", graphs=True, weights=None):
    left, right = pair(h, w)
    b = build(name, h, w, variant, precision, graphs, weights)
    p50, p95, mean = timed(b, left, right)
    emit({"config": name, "input": f"{w}x{h}", "variant": variant, "precision": precision, "cuda_graphs": graphs,
          "p50_ms": p50, "p95_ms": p95, "disparity_mean": mean, "notes": b.runner.notes})
    return b


def split(b, h, w, label):
    """Per part with CUDA events: upload (pinned staging + H2D), graph replay (normalise + network),
    download; 100 frames."""
    left, right = pair(h, w)
    r = b.runner
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
    parts = {"upload": [], "replay": [], "download": []}
    for _ in range(100):
        with torch.cuda.device(r.device), torch.cuda.stream(r.stream):
            ev[0].record(r.stream)
            r.normaliser.upload(left, right)
            ev[1].record(r.stream)
            r.graph.replay()
            ev[2].record(r.stream)
            for n_, host in r.host_out.items():
                host.copy_(r.outputs[n_].view(host.shape), non_blocking=True)
            ev[3].record(r.stream)
        r.stream.synchronize()
        for k, (a, c) in zip(parts, ((0, 1), (1, 2), (2, 3))):
            parts[k].append(ev[a].elapsed_time(ev[c]))
    notes[f"split {label}"] = {k: float(np.median(v)) for k, v in parts.items()}
    print(label, notes[f"split {label}"], flush=True)


def profile(name, h, w, variant):
    left, right = pair(h, w)
    b = build(name, h, w, variant, graphs=False)
    for _ in range(10):
        b.infer(left, right)
    from torch.profiler import ProfilerActivity, profile as prof
    with prof(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as p:
        for _ in range(5):
            b.infer(left, right)
        torch.cuda.synchronize()
    kernels = [e for e in p.events() if e.device_type.name == "CUDA"]
    total = sum(e.time_range.elapsed_us() for e in kernels) / 5 / 1e3
    by = {}
    for e in kernels:
        by.setdefault(e.name[:90], [0, 0.0])
        by[e.name[:90]][0] += 1
        by[e.name[:90]][1] += e.time_range.elapsed_us() / 5 / 1e3
    top = sorted(by.items(), key=lambda kv: -kv[1][1])[:15]
    notes[f"profile {name} {variant}"] = {"gpu_ops_per_frame": len(kernels) / 5, "gpu_busy_ms_per_frame": total,
                                          "top": [[k, v[0] / 5, round(v[1], 4)] for k, v in top]}
    print(json.dumps(notes[f"profile {name} {variant}"], indent=0)[:3000], flush=True)


torch.manual_seed(0)
acc = save_weights(StereoNet(get_config("accurate")), "/tmp/accurate_random.safetensors", {"note": "random, timing only"})
b = safe(measure, "fast", 480, 640, "before")
safe(split, b, 480, 640, "fast before")
b = safe(measure, "fast", 480, 640, "nchw")
safe(split, b, 480, 640, "fast nchw")
b = safe(measure, "fast", 480, 640, "shipped")
safe(split, b, 480, 640, "fast shipped")
b = None
safe(measure, "fast", 480, 640, "autocast")
safe(measure, "fast", 480, 640, "shipped", precision="fp32")
safe(measure, "fast", 480, 640, "nchw", precision="fp32")
safe(measure, "fast", 480, 640, "before", precision="fp32")
safe(measure, "fast", 480, 640, "shipped", graphs=False)
safe(measure, "fast", 480, 640, "nchw", graphs=False)
safe(measure, "fast", 480, 640, "before", graphs=False)
for name, weights in (("tiny", None), ("accurate", acc)):
    for variant in ("before", "nchw", "shipped"):
        safe(measure, name, 480, 640, variant, weights=weights)
safe(measure, "fast", 704, 1280, "before")
safe(measure, "fast", 704, 1280, "nchw")
b = safe(measure, "fast", 704, 1280, "shipped")
safe(split, b, 704, 1280, "fast 1280x704 shipped")
b = None
safe(profile, "fast", 480, 640, "nchw")
safe(profile, "fast", 480, 640, "shipped")
safe(measure, "fast", 480, 640, "compile")
for variant in ("shipped", "nchw", "before"):  # again at the end: drift over the call
    safe(measure, "fast", 480, 640, variant)
