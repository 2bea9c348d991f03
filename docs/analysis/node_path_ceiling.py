"""README *Fine-tuning on your own recordings*: how much any better network can lower the node path's dense
bad-2. The ground truth stands in for `tiny`'s output (a perfect network at its 256x192 input) and goes
through the node's path (inference/base.py `infer_at_image_size`: the local matching, the SGBM fusion, the
edge sides) like the network's answer does; its score is the floor for every network, so its change against
the shipped network's score is the most that adaptation can gain there. Run from the repository root:
    PYTHONPATH=$PWD python3 docs/analysis/node_path_ceiling.py aloe [ADAPTED.safetensors ...]
    python -m ros2_stereo_depth.data.heldout_bag heldout/ --frames 60 --seed 2027
    PYTHONPATH=$PWD python3 docs/analysis/node_path_ceiling.py heldout [ADAPTED.safetensors ...]
Aloe is scored at quarter size (as the README's test-time adaptation), a recording on its frames 40-59.
"""
import sys

import cv2
import numpy as np

from ros2_stereo_depth.config import get_config
from ros2_stereo_depth.evaluation.metrics import disparity_metrics, pool_metrics
from ros2_stereo_depth.evaluation.pairs import evaluation_pairs, rescale_pair
from ros2_stereo_depth.inference.base import StereoResult, infer_at_image_size
from ros2_stereo_depth.inference.local_matching import NO_MATCHING, LocalMatching
from ros2_stereo_depth.inference.select import BackendRequest, create_backend
from ros2_stereo_depth.inference.sgbm import fill_holes

ALOE = "/usr/share/doc/opencv-doc/examples/data/aloe"


class TruthBackend:
    """The ground truth at tiny's input size, as if a network had answered it (unknown pixels: the farther
    of their row's nearest known neighbours, as an occlusion is filled)."""
    name, device = "ground truth", "cpu"

    def __init__(self) -> None:
        config = get_config("tiny")
        self.height, self.width, self.max_disparity = config.height, config.width, config.max_disparity
        self.disparity_px = np.zeros((1, 1), np.float32)

    def infer(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> StereoResult:
        d = cv2.resize(self.disparity_px, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        d *= self.width / self.disparity_px.shape[1]
        return StereoResult(d.astype(np.float32), np.ones_like(d, np.float32))


def main() -> None:
    source, weights = sys.argv[1], sys.argv[2:]
    if source == "aloe":
        pairs = [rescale_pair(p, 0.25) for _, p in evaluation_pairs(None, left=f"{ALOE}L.jpg", right=f"{ALOE}R.jpg",
                                                                  gt=f"{ALOE}GT.png")]
    else:
        pairs = [p for _, p in evaluation_pairs(source, frames="40:60")]
    truth = TruthBackend()
    backends = {"ground truth": truth, "shipped tiny": create_backend(BackendRequest(backend="torch", config="tiny")).backend}
    for path in weights:
        backends[path] = create_backend(BackendRequest(backend="torch", config="tiny", weights=path)).backend
    scores = {}
    for name, backend in backends.items():
        per_path = {"alone": [], "node": []}
        for pair in pairs:
            known = pair.valid & np.isfinite(pair.disparity_px)
            truth.disparity_px = np.nan_to_num(fill_holes(pair.disparity_px, known), nan=0.0)
            for path, matching in (("alone", NO_MATCHING), ("node", LocalMatching())):
                d = infer_at_image_size(backend, pair.left, pair.right, matching).disparity_px
                per_path[path].append(disparity_metrics(d, pair.disparity_px, pair.valid, np.isfinite(d) & (d > 0)))
        scores[name] = {path: pool_metrics(rows)["bad2"] for path, rows in per_path.items()}
    shipped = scores["shipped tiny"]["node"]
    print(f"{source}, dense bad-2 %: network alone | node path | node path against the shipped tiny's")
    for name, row in scores.items():
        print(f"  {name}: {row['alone']:.2f} | {row['node']:.2f} | {100 * (row['node'] / shipped - 1):+.0f} %")


if __name__ == "__main__":
    main()
