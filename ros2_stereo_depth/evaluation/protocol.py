"""The evaluation protocol behind `stereo-depth evaluate`: the network against OpenCV SGBM on the same pairs.

- Resolution: the pairs as given (full resolution) unless `scale` resizes them (images INTER_AREA, ground
  truth nearest neighbour with values times the width ratio): every number is in px at that resolution.
- Network: by default what the node publishes for a camera of that resolution with its default parameters
  (evaluation/network.py), local matching included; `native` runs the network at the image's own size
  instead; NetworkSettings.matching = NO_MATCHING scores the network alone.
- SGBM: at the search range given (the network's, in px of the evaluated image) and, with sgbm="tuned"
  (the default), tuned on the ground truth (evaluation/sgbm.py), also with its holes filled from the
  background (`sgbm_tuned_filled`, the stronger baseline on dense metrics). Ratios: network / tuned SGBM
  (`ratio_to_tuned_sgbm`, issue 9's) and network / filled tuned SGBM (`ratio_to_tuned_sgbm_filled`).
- Metrics (evaluation/metrics.py): dense, pooled over all pairs' pixels; `seconds` is the wall time per
  pair of each method alone (no file reading, no rescaling).
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from ..fileio import write_rgb
from ..pair import StereoPair
from ..artifacts.weights import describe
from .metrics import EDGE_THRESHOLD_PX, METRIC_KEYS, disparity_metrics, pool_metrics
from .network import NetworkRunner, NetworkSettings
from .pairs import rescale_pair
from .picture import comparison_picture
from ..inference.sgbm import BLOCK_SIZE, fill_holes, sgbm_disparity, sgbm_num_disparities
from .sgbm import tune_sgbm

SGBM_MODES = ("tuned", "given", "none")
PICTURE_WIDTH_PX = 2000  # five panels
RATIO_KEYS = ("bad1", "bad2", "bad3", "epe", "d1", "edge_bad2", "edge_epe")


@dataclass(frozen=True)
class EvaluationSettings:
    network: NetworkSettings = field(default_factory=NetworkSettings)
    scale: float = 1.0
    sgbm: str = "tuned"  # tuned: given range and tuned; given: given range only; none: network only
    picture: str = ""  # PNG of the first pair: left | ours | tuned SGBM | filled | ground truth (needs sgbm=tuned)


def evaluate(named_pairs: Iterable[tuple[str, StereoPair]], settings: EvaluationSettings,
             verbose: bool = False) -> dict[str, object]:
    if settings.sgbm not in SGBM_MODES:
        raise ValueError(f"sgbm must be one of {SGBM_MODES}, not {settings.sgbm!r}")
    if settings.picture and settings.sgbm != "tuned":
        raise ValueError("the evaluation picture shows tuned SGBM: use it with --sgbm tuned")
    runner = NetworkRunner(settings.network)
    pairs: list[StereoPair] = []  # kept for the SGBM tuning only
    count = 0
    per_pair: dict[str, list[dict[str, float]]] = {"model": [], "sgbm": []}
    seconds = {"model": 0.0, "sgbm": 0.0}
    sizes, ranges, sgbm_ranges = set(), set(), set()
    for name, item in named_pairs:
        item = rescale_pair(item, settings.scale)
        assert item.disparity_px is not None and item.valid is not None
        count += 1
        if settings.sgbm == "tuned":
            pairs.append(item)
        h, w = item.left.shape[:2]
        sizes.add(f"{w}x{h}")
        search_px = runner.search_range_px(h, w)
        ranges.add(round(search_px, 2))
        started = time.perf_counter()
        disparity, predicted = runner(item.left, item.right)
        seconds["model"] += time.perf_counter() - started
        if count == 1:
            first_prediction = np.where(predicted, disparity, np.nan)
        per_pair["model"].append(disparity_metrics(disparity, item.disparity_px, item.valid, predicted))
        if settings.sgbm != "none":
            sgbm_ranges.add(sgbm_num_disparities(search_px))
            started = time.perf_counter()
            disparity, predicted = sgbm_disparity(item.left, item.right, sgbm_num_disparities(search_px))
            seconds["sgbm"] += time.perf_counter() - started
            per_pair["sgbm"].append(disparity_metrics(disparity, item.disparity_px, item.valid, predicted))
        if verbose:
            print(f"{name}: {w}x{h} network bad-2 {per_pair['model'][-1]['bad2']:.1f} %")
    if count == 0:
        raise ValueError("no stereo pairs found")
    selected = next(iter(runner.selected.values()))
    report: dict[str, object] = {
        "protocol": {
            "path": "native" if settings.network.native else "node",
            "scale": settings.scale, "resolution": sorted(sizes), "pairs": count,
            "network_input": sorted(f"{b.backend.width}x{b.backend.height}" for b in runner.selected.values()),
            "search_range_px": sorted(ranges), "edge_threshold_px": EDGE_THRESHOLD_PX,
            "min_disparity": settings.network.min_disparity, "min_confidence": settings.network.min_confidence,
            "match_radius_px": settings.network.matching.radius_px,
            "match_camera_radius_px": 0 if settings.network.native else settings.network.matching.camera_radius_px,
            "match_sgbm": settings.network.matching.sgbm,
            "match_width_px": settings.network.matching.width_px,
            "match_edges": settings.network.matching.edges,
        },
        "backend": f"{selected.backend.name} on {selected.backend.device}",
        "backend_reason": selected.reason,
        "weights": describe(selected.weights),
        "settings": asdict(settings),
        "model": _summary(per_pair["model"], seconds["model"] / count),
    }
    if settings.sgbm != "none":
        report["sgbm"] = {**_summary(per_pair["sgbm"], seconds["sgbm"] / count),
                          "num_disparities": sorted(sgbm_ranges), "block_size": BLOCK_SIZE}
    if settings.sgbm == "tuned":
        tuned = tune_sgbm(pairs)
        report["sgbm_tuned"] = {**_summary([tuned.metrics], tuned.seconds_per_pair),
                                "num_disparities": tuned.num_disparities, "block_size": tuned.block_size,
                                "search_seconds": tuned.search_seconds, "candidates": len(tuned.tried)}
        assert tuned.filled is not None
        report["sgbm_tuned_filled"] = {**_summary([tuned.filled.metrics], tuned.filled.seconds_per_pair),
                                       "num_disparities": tuned.filled.num_disparities,
                                       "block_size": tuned.filled.block_size}
        model = report["model"]
        for key, sgbm in (("ratio_to_tuned_sgbm", report["sgbm_tuned"]),
                          ("ratio_to_tuned_sgbm_filled", report["sgbm_tuned_filled"])):
            report[key] = {k: _ratio(model[k], sgbm[k]) for k in RATIO_KEYS}  # type: ignore[index]
        if settings.picture:
            matching = settings.network.matching
            matched = matching.radius_px or (not settings.network.native and matching.camera_radius_px)
            # Short enough for the panel: the README caption says what the node path holds.
            stages = [name for name, on in (("matching", matched), ("SGBM", matching.sgbm)) if on]
            label = ("network at native size" if settings.network.native else "node: network") + (
                "".join(f" + {name}" for name in stages) or " alone")
            write_picture(settings.picture, pairs[0], first_prediction, tuned.num_disparities, tuned.block_size, label)
    return report


def write_picture(path: str, pair: StereoPair, prediction: np.ndarray, num_disparities: int,
                  block_size: int, label: str) -> None:
    assert pair.disparity_px is not None and pair.valid is not None
    sgbm, predicted = sgbm_disparity(pair.left, pair.right, num_disparities, block_size)
    gt = np.where(pair.valid, pair.disparity_px, np.nan)
    top = float(np.nanpercentile(gt, 99.5)) * 1.1
    write_rgb(path, comparison_picture(pair.left, [(label, prediction),
                                                   (f"SGBM tuned (nd {num_disparities}, b {block_size})", sgbm),
                                                   ("SGBM tuned, filled", fill_holes(sgbm, predicted)),
                                                   ("ground truth", gt)], top, width_px=PICTURE_WIDTH_PX))


def _summary(per_pair: list[dict[str, float]], seconds: float) -> dict[str, float | None]:
    pooled = pool_metrics(per_pair)
    summary: dict[str, float | None] = {k: _finite(pooled[k]) for k in METRIC_KEYS}
    summary["edge_pixels"] = pooled["edge_pixels"]
    summary["seconds"] = seconds
    return summary


def _finite(value: float) -> float | None:
    """NaN (e.g. epe_predicted with nothing predicted) is not JSON: None."""
    return None if value != value else value


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


ROWS = (("epe", "EPE (px, dense)"), ("epe_predicted", "EPE (px, predicted only)"), ("bad1", "bad-1 (%)"),
        ("bad2", "bad-2 (%)"), ("bad3", "bad-3 (%)"), ("d1", "D1-all (%)"), ("density", "density (%)"),
        ("edge_bad2", "edge bad-2 (%)"), ("edge_epe", "edge EPE (px)"), ("seconds", "seconds / pair"))


def format_table(report: dict[str, object]) -> str:
    p: dict = report["protocol"]  # type: ignore[assignment]
    methods = [m for m in ("model", "sgbm", "sgbm_tuned", "sgbm_tuned_filled") if m in report]
    level = f"{p['match_width_px']} px wide" if p["match_width_px"] else "the network's width"
    lines = [f"{p['pairs']} pair(s) at scale {p['scale']} ({', '.join(p['resolution'])}), {p['path']} path "
             f"(network input {', '.join(p['network_input'])}, search range {', '.join(map(str, p['search_range_px']))} px, "
             f"local matching +-{p['match_radius_px']} px at {level} and the image's aspect ratio, +-{p['match_camera_radius_px']} px at "
             f"the image, SGBM fusion {'on' if p['match_sgbm'] else 'off'}, edge sides {'on' if p.get('match_edges') else 'off'}); "
             "dense metrics over all pixels with ground truth (no prediction = error); "
             f"edges: ground-truth jump > {p['edge_threshold_px']} px",
             f"network: {report['weights']}; {report['backend']}"]
    if "sgbm" in report:
        s: dict = report["sgbm"]  # type: ignore[assignment]
        lines.append(f"sgbm: numDisparities {', '.join(map(str, s['num_disparities']))}, block {s['block_size']}")
    if "sgbm_tuned" in report:
        t: dict = report["sgbm_tuned"]  # type: ignore[assignment]
        f: dict = report["sgbm_tuned_filled"]  # type: ignore[assignment]
        lines.append(f"sgbm_tuned: numDisparities {t['num_disparities']}, block {t['block_size']} "
                     f"(best bad-2 of {t['candidates']} settings, search {t['search_seconds']:.1f} s); sgbm_tuned_filled: "
                     f"the same grid with holes filled from the background along rows, best numDisparities "
                     f"{f['num_disparities']}, block {f['block_size']}")
    header = f"{'metric':<26}" + "".join(f"{m:>18}" for m in methods)
    if "ratio_to_tuned_sgbm" in report:
        header += f"{'ratio':>10}{'ratio filled':>14}"
    lines.append(header)
    for key, label in ROWS:
        row = f"{label:<26}" + "".join(_cell(report[m].get(key), 18) for m in methods)  # type: ignore[attr-defined]
        if "ratio_to_tuned_sgbm" in report:
            row += _cell(report["ratio_to_tuned_sgbm"].get(key), 10)  # type: ignore[attr-defined]
            row += _cell(report["ratio_to_tuned_sgbm_filled"].get(key), 14)  # type: ignore[attr-defined]
        lines.append(row)
    return "\n".join(lines)


def _cell(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.3f}"
