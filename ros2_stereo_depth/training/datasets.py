"""What each training step sees, as a function of (seed, step, rank) only: exact resume, no global RNG.

Step k of process `rank` (of `world`) takes the samples at positions (k * world + rank) * batch + j,
j < batch. The synthetic set maps a position to its scene; a dataset of real pairs to a pair of a
per-epoch permutation and a random crop, both seeded by the position.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from ..config import get_config
from ..data.batches import collate, random_crop
from ..inference.base import resize_to_input
from ..pair import StereoPair
from .settings import TrainSettings
from .validation import split_holdout


class StepBatches(Sampler[list[int]]):
    """Sample positions of the steps [start, end) for one process."""

    def __init__(self, start: int, end: int, batch_size: int, rank: int, world: int) -> None:
        self.start, self.end, self.batch_size, self.rank, self.world = start, end, batch_size, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.end):
            first = (step * self.world + self.rank) * self.batch_size
            yield list(range(first, first + self.batch_size))

    def __len__(self) -> int:
        return self.end - self.start


def synthetic_source(settings: TrainSettings, stage: int) -> Dataset:
    """The procedural generator (data/synthetic.py): the only place training depends on its API."""
    from ..data.synthetic import SceneParams, SyntheticStereo
    from ..data.textures import TextureBank
    params = SceneParams(settings.crop_height, settings.crop_width,
                         max_disparity_px=float(settings.max_disparity) * 0.95, far_scene_prob=settings.far_scene_prob)
    bank = TextureBank.load() if settings.textures == "photos" else None
    if bank is not None and not len(bank):
        raise ValueError("textures: photos, but none of the texture packages is installed (run `make textures`)")
    return SyntheticStereo(params, seed=settings.seed * 1000 + stage, textures=bank)  # type: ignore[return-value]


class SyntheticItems(Dataset):
    """Synthetic scenes as StereoPairs, every ground-truth pixel valid (the disparity is exact)."""

    def __init__(self, source: Dataset) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, position: int) -> StereoPair:
        s = self.source[position % len(self)]
        return StereoPair(s.left, s.right, s.disparity_px, np.ones(s.disparity_px.shape, bool))


class CroppedItems(Dataset):
    """Real pairs (data/readers.py): a new permutation every epoch, a random crop per position."""

    def __init__(self, items: Dataset, height: int, width: int, seed: int) -> None:
        self.items, self.height, self.width, self.seed = items, height, width, seed

    def __len__(self) -> int:
        return len(self.items)  # type: ignore[arg-type]

    def __getitem__(self, position: int) -> StereoPair:
        n = len(self)
        epoch, offset = divmod(position, n)
        index = int(np.random.default_rng([self.seed, epoch]).permutation(n)[offset])
        rng = np.random.default_rng([self.seed, position, 1])
        return random_crop(self.items[index], self.height, self.width, rng)


def resized_pair(left_rgb: np.ndarray, right_rgb: np.ndarray, width: int, height: int) -> StereoPair:
    """An unlabelled pair at the network input size, resized as inference resizes it (resize_to_input)."""
    return StereoPair(resize_to_input(left_rgb, width, height), resize_to_input(right_rgb, width, height), None, None)


class NetworkSizeItems(Dataset):
    """Unlabelled pairs resized to the network input as the node resizes camera images (inference/base.py
    resize_to_input: INTER_AREA when shrinking), so that self-supervised adaptation trains on the pixels
    the network sees at inference: a 320x240 camera feeds `fast` 640x480 images with twice its disparities."""

    def __init__(self, items: Dataset, width: int, height: int) -> None:
        self.items, self.width, self.height = items, width, height

    def __len__(self) -> int:
        return len(self.items)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> StereoPair:
        pair = self.items[index]
        return resized_pair(pair.left, pair.right, self.width, self.height)


def holds_out(settings: TrainSettings) -> bool:
    """Self-supervised training on real data keeps pairs out for label-free validation (training/validation.py)."""
    return settings.mode == "self-supervised" and settings.data != "synthetic"


def network_size(settings: TrainSettings) -> tuple[int, int] | None:
    """(width, height) every real pair is resized to (self-supervised, frame_size "network"), else None."""
    if not (holds_out(settings) and settings.frame_size == "network"):
        return None
    config = get_config(settings.config)
    return config.width, config.height


def open_real_items(settings: TrainSettings) -> Dataset:
    """Every pair of the stage's dataset or bag, held-out ones included: at the recorded size, or at the
    network's input size (`network_size`)."""
    from ..data.readers import open_training_dataset  # real formats only when asked
    items = open_training_dataset(settings.data, settings.data_format, settings.mode,
                                  left_topic=settings.left_topic or None, right_topic=settings.right_topic or None,
                                  tolerance_s=settings.stamp_tolerance_s)
    size = network_size(settings)
    return items if size is None else NetworkSizeItems(items, *size)


def open_dataset(settings: TrainSettings, stage: int) -> Dataset:
    if settings.data == "synthetic":
        return SyntheticItems(synthetic_source(settings, stage))
    items = open_real_items(settings)
    if holds_out(settings):
        training, _ = split_holdout(len(items), settings.holdout_every, settings.holdout_last)  # type: ignore[arg-type]
        items = Subset(items, training)
    height, width = settings.crop_height, settings.crop_width
    size = network_size(settings)
    if size is not None:  # a crop larger than the network's input would need pixels no frame has
        height, width = min(height, size[1]), min(width, size[0])
    return CroppedItems(items, height, width, settings.seed * 1000 + stage)


def _ignore_sigint(_: int) -> None:
    # Ctrl-C reaches the whole process group: the main process checkpoints and stops the workers itself.
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def step_loader(settings: TrainSettings, stage: int, start: int, end: int, rank: int, world: int) -> DataLoader:
    """Batches for the global steps [start, end) of this process."""
    if settings.workers > 0:
        # One OpenCV thread per data worker (N workers on N cores, not N x N threads). Set here, before the
        # workers fork: a forked child that resizes OpenCV's thread pool can hang.
        import cv2
        cv2.setNumThreads(1)
    return DataLoader(open_dataset(settings, stage), batch_sampler=StepBatches(start, end, settings.batch_size, rank, world),
                      num_workers=settings.workers, collate_fn=partial(collate, max_disparity=settings.max_disparity),
                      worker_init_fn=_ignore_sigint if settings.workers > 0 else None)
