"""README *Fine-tuning on your own recordings*, the noisy recording (training's texture families): where
`tiny`'s errors are, and how the photometric errors rank the ground truth against the networks' maps. Run
from the repository root:
    python -m ros2_stereo_depth.data.heldout_bag heldout/ --frames 60 --texture-families training
    PYTHONPATH=$PWD python3 docs/analysis/heldout_photometric.py heldout [ADAPTED.safetensors ...]
"""
import collections
import sys

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ros2_stereo_depth.artifacts.weights import load_model
from ros2_stereo_depth.data.bags import StereoBag
from ros2_stereo_depth.data.heldout_bag import GROUND_TRUTH_FILE, read_heldout_ground_truth
from ros2_stereo_depth.normalisation import normalise
from ros2_stereo_depth.training import losses as L

FLAT_STD = 6.0  # grey levels: 7x7 standard deviation of the 3x3-blurred grey image


def gaussian(x, sigma):
    r = int(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-t ** 2 / (2 * sigma * sigma))
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(x.shape[1], 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.transpose(2, 3), groups=x.shape[1])


def zncc(l, w, k):
    l, w, p = l.mean(1, keepdim=True), w.mean(1, keepdim=True), k // 2
    l, w = F.pad(l, (p,) * 4, mode="reflect"), F.pad(w, (p,) * 4, mode="reflect")
    ml, mw = F.avg_pool2d(l, k, 1), F.avg_pool2d(w, k, 1)
    vl, vw = F.avg_pool2d(l * l, k, 1) - ml ** 2, F.avg_pool2d(w * w, k, 1) - mw ** 2
    return (1 - (F.avg_pool2d(l * w, k, 1) - ml * mw) / torch.sqrt(vl * vw + 1e-6)) / 2


def census_error(l, w, k):
    def codes(x):
        x, p = x.mean(1, keepdim=True) * 255, k // 2
        t = F.unfold(F.pad(x, (p,) * 4, mode="reflect"), k).view(x.shape[0], k * k, *x.shape[2:]) - x
        return t / torch.sqrt(0.81 + t * t)
    d = (codes(l) - codes(w)) ** 2
    return (d / (0.1 + d)).mean(1, keepdim=True)


ERRORS = {
    "trained (SSIM 3x3 + L1)": L.photometric_error,
    "L1 after blur sigma 2": lambda l, w: (gaussian(l, 2.0) - gaussian(w, 2.0)).abs().mean(1, keepdim=True),
    "ZNCC 7x7": lambda l, w: zncc(l, w, 7),
    "ZNCC 11x11": lambda l, w: zncc(l, w, 11),
    "census 7x7": lambda l, w: census_error(l, w, 7),
    "census 9x9": lambda l, w: census_error(l, w, 9),
}


def main(directory, adapted):
    torch.set_num_threads(2)
    truth = read_heldout_ground_truth(f"{directory}/{GROUND_TRUTH_FILE}")
    wanted = set(sorted(truth)[40:60])
    nets = {"shipped tiny": load_model("tiny", None, height=240, width=320).net.eval()}
    nets.update({path: load_model("tiny", path, height=240, width=320).net.eval() for path in adapted})
    regions = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
    scores = collections.defaultdict(lambda: collections.defaultdict(list))
    for frame in StereoBag(f"{directory}/bag"):
        if frame.stamp_ns not in wanted:
            continue
        gt, occluded = truth[frame.stamp_ns]
        grey = cv2.blur(frame.pair.left.astype(np.float32).mean(2), (3, 3))
        mean = cv2.blur(grey, (7, 7))
        flat = np.sqrt(np.maximum(cv2.blur(grey * grey, (7, 7)) - mean * mean, 0)) < FLAT_STD
        border = np.arange(gt.shape[1])[None, :] - gt < 0
        masks = {"flat": ~occluded & ~border & flat, "textured": ~occluded & ~border & ~flat,
                 "occluded": occluded & ~border, "border": border}
        left, right = (torch.from_numpy(normalise(im)) for im in (frame.pair.left, frame.pair.right))
        left_rgb, right_rgb = L.unnormalise(left), L.unnormalise(right)
        gt_t = torch.from_numpy(gt)[None, None].float()
        maps = {"truth": gt_t, "truth + 1 px": gt_t + 1}
        with torch.no_grad():
            maps.update({name: net(left, right)["disparity"].float() for name, net in nets.items()})
        inside = torch.ones_like(gt_t)
        for d in maps.values():
            inside = inside * L.in_view(d).float()
        for name, d in maps.items():
            bad = np.abs(d[0, 0].numpy() - gt) > 2
            for region, mask in masks.items():
                regions[name][region][0] += int((bad & mask).sum())
                regions[name][region][1] += int(mask.sum())
            warped = L.warp_right_to_left(right_rgb, d)
            for error, fn in ERRORS.items():
                scores[name][error].append(float((fn(left_rgb, warped) * inside).sum() / inside.sum()))
    total = sum(n for _, n in regions["truth"].values())
    print("bad-2 by region (share of pixels):", {r: f"{100 * n / total:.1f} %" for r, (_, n) in regions["truth"].items()})
    for name in nets:
        print(f"  {name}: " + ", ".join(f"{r} {100 * a / max(n, 1):.1f} %" for r, (a, n) in regions[name].items()))
    print("photometric error relative to the ground truth's, common in-view pixels:")
    for name in maps:
        print(f"  {name}: " + ", ".join(f"{e} {100 * (np.mean(v) / np.mean(scores['truth'][e]) - 1):+.2f} %"
                                       for e, v in scores[name].items()))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
