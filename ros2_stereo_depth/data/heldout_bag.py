"""A held-out-domain recording: a moving synthetic scene written to a real ROS 2 bag, ground truth aside.

The domain differs from what training sees (SceneParams(256, 320, ~122 px) with Photometric's default
noise of at most 3 % and textures cut from shipped images 40 % of the time): another camera (focal
length, baseline and nearest depth set the disparity range), stronger sensor noise, and texture
families that training never draws (procedural.HELDOUT_FAMILIES: stones, grain, gravel, strokes).
`texture_families="training"` draws training's procedural families instead: the noisy recording of
earlier measurements, where the camera and the noise are the only changes. The bag holds what a
rectifying stereo driver publishes, <ns>/{left,right}/image_rect + camera_info; the ground truth
(left-view disparity, occlusion) goes to a side file, ground_truth.npz, keyed by the image stamps, for
evaluating on frames that fine-tuning did not use.

    python -m ros2_stereo_depth.data.heldout_bag OUT_DIR [--frames 60] [--storage mcap|sqlite3]
        [--texture-families heldout|training] [--seed 2026]
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..geometry import StereoCamera
from .bag_writer import COMPRESSED_FORMATS, RAW_ENCODINGS, STORAGES, BagMessage, stereo_messages, write_bag
from .synthetic import TEXTURE_FAMILIES, Photometric, SceneParams, SyntheticSequence

GROUND_TRUTH_FILE = "ground_truth.npz"


@dataclass(frozen=True)
class HeldOutDomain:
    height: int = 240
    width: int = 320
    fx_px: float = 280.0
    baseline_m: float = 0.09
    min_depth_m: float = 0.6  # the nearest surface: fx * baseline / min_depth = 42 px, the largest disparity
    frame_rate_hz: float = 10.0
    latency_s: float = 0.004  # receive time after the stamp, as on a real graph
    seed: int = 2026
    texture_families: str = "heldout"  # synthetic.TEXTURE_FAMILIES
    photometric: Photometric = field(default_factory=lambda: Photometric(
        gain_range=(0.7, 1.1), bias_range=(-0.05, 0.05), gamma_range=(0.9, 1.1), colour_jitter=0.03,
        noise_std_range=(0.04, 0.06), blur_prob=0.0, vertical_jitter_px=0.0))

    @property
    def max_disparity_px(self) -> float:
        return self.fx_px * self.baseline_m / self.min_depth_m

    @property
    def camera(self) -> StereoCamera:
        return StereoCamera(self.fx_px, self.fx_px, (self.width - 1) / 2.0, (self.height - 1) / 2.0,
                            self.baseline_m, self.width, self.height)

    def scene(self) -> SceneParams:
        return SceneParams(self.height, self.width, self.max_disparity_px, image_texture_prob=0.0,
                           texture_families=self.texture_families)


@dataclass
class HeldOutFrame:
    stamp_ns: int
    left: np.ndarray  # (H,W,3) uint8, with the domain's camera noise
    right: np.ndarray
    disparity_px: np.ndarray  # (H,W) float32, exact
    occluded: np.ndarray  # (H,W) bool


def heldout_frames(domain: HeldOutDomain, count: int, start_ns: int = 1_700_000_000_000_000_000) -> Iterator[HeldOutFrame]:
    sequence = SyntheticSequence(domain.scene(), seed=domain.seed)
    period_ns = int(round(1e9 / domain.frame_rate_hz))
    for index in range(count):
        sample = sequence.frame(index)
        rng = np.random.default_rng([domain.seed, index])
        left = domain.photometric.apply(rng, sample.left)
        right = domain.photometric.apply(rng, sample.right, right=True)
        yield HeldOutFrame(start_ns + index * period_ns, left, right, sample.disparity_px, sample.occluded)


def write_heldout_bag(out_dir: str | Path, frames: int = 60, storage: str = "mcap", encoding: str = "rgb8",
                      domain: HeldOutDomain | None = None) -> tuple[Path, Path]:
    """Write OUT_DIR/bag (rosbag2) and OUT_DIR/ground_truth.npz; returns both paths. OUT_DIR/bag must not exist."""
    domain = domain or HeldOutDomain()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamps, disparities, occlusions = [], [], []
    latency_ns = int(round(domain.latency_s * 1e9))

    def messages() -> Iterator[BagMessage]:
        for frame in heldout_frames(domain, frames):
            stamps.append(frame.stamp_ns)
            disparities.append(frame.disparity_px)
            occlusions.append(frame.occluded)
            for item in stereo_messages(frame.stamp_ns, frame.left, frame.right, domain.camera, encoding):
                yield BagMessage(item.topic, item.msgtype, item.timestamp_ns + latency_ns, item.message)

    bag = write_bag(out / "bag", messages(), storage)
    truth = out / GROUND_TRUTH_FILE
    np.savez_compressed(truth, stamps_ns=np.asarray(stamps, np.int64), disparity_px=np.stack(disparities),
                        occluded=np.stack(occlusions), fx_px=domain.fx_px, baseline_m=domain.baseline_m,
                        domain=json.dumps(asdict(domain)))
    return bag, truth


def read_heldout_ground_truth(path: str | Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """ground_truth.npz -> {left image stamp ns: (disparity px, occluded)}. No pickles are loaded."""
    with np.load(path, allow_pickle=False) as data:
        return {int(s): (d, o) for s, d, o in zip(data["stamps_ns"], data["disparity_px"], data["occluded"])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="writes OUT_DIR/bag and OUT_DIR/ground_truth.npz")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--storage", choices=STORAGES, default="mcap")
    parser.add_argument("--encoding", choices=RAW_ENCODINGS + COMPRESSED_FORMATS, default="rgb8")
    parser.add_argument("--texture-families", choices=TEXTURE_FAMILIES, default=HeldOutDomain.texture_families,
                        help="heldout: families training never draws (default); training: training's procedural ones")
    parser.add_argument("--seed", type=int, default=HeldOutDomain.seed, help="the scene and its noise")
    args = parser.parse_args(argv)
    domain = HeldOutDomain(seed=args.seed, texture_families=args.texture_families)
    bag, truth = write_heldout_bag(args.out_dir, args.frames, args.storage, args.encoding, domain)
    print(f"wrote {bag} ({args.frames} stereo frames, {args.storage}) and {truth}")


if __name__ == "__main__":
    main()
