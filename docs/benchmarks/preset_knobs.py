"""The CPU preset's knobs on the chart's pair (BENCHMARKS.md, "The CPU preset's knobs"): `tiny` at
several network inputs, the first matching level at several widths (SGBM fusion, no census search, no
second level, no edge sides: the preset's matching), and the preset with the edge sides on; Aloe at
641x555 through the node's whole disparity path, times interleaved; SGBM and SGBM with its holes filled at the chart sizes before them. 2 cores: a few minutes.
    PYTHONPATH=$PWD python3 docs/benchmarks/preset_knobs.py
The held-out column (the noisy recording: python -m ros2_stereo_depth.data.heldout_bag heldout/ --frames 60
--texture-families training): stereo-depth evaluate --dataset heldout --frames 40:60 --config tiny --height H
--width W --match-radius 0 --match-camera-radius 0 --match-width L (README "Fine-tuning")."""
from ros2_stereo_depth.evaluation.bench_report import make_backend
from ros2_stereo_depth.evaluation.speed_chart import SGBM, SGBM_FILLED, accuracy_at_size, load_aloe
from ros2_stereo_depth.inference.local_matching import NO_MATCHING, LocalMatching

aloe = load_aloe()
for size, search in (((320, 256), 64), ((480, 352), 96), ((640, 480), 128)):
    for name, point in accuracy_at_size({SGBM: (None, search, NO_MATCHING), SGBM_FILLED: (None, search, NO_MATCHING)},
                                        size, 9, aloe).items():
        print(f"{name} at {size[0]}x{size[1]}: {point['p50_ms']:.1f} ms, bad-2 {point['bad2']:.1f} %", flush=True)
methods = {}
for width, height, search, levels in ((256, 192, 64, (0, 320, 384)), (192, 144, 48, (320,)), (160, 128, 32, (384,)),
                                      (128, 96, 32, (384, 160, 128))):
    backend = make_backend("tiny", "onnxruntime", (width, height), search, 0)
    for level in levels:
        methods[f"tiny {width}x{height}, level 1 {level or 'auto'}"] = (backend, search, LocalMatching(
            0, 0, sgbm=True, width_px=level, edges=False))
        if (width, level) == (256, 0):
            methods["tiny 256x192, level 1 auto, edge sides"] = (backend, search, LocalMatching(0, 0, sgbm=True))
for name, point in accuracy_at_size(methods, (320, 256), 9, aloe).items():  # the size only names SGBM's point
    print(f"{name}: {point['p50_ms']:.1f} ms, bad-2 {point['bad2']:.1f} %", flush=True)
