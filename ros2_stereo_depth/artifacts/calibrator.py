"""INT8 entropy calibration (TensorRT 10.x weakly typed builds) on our synthetic stereo scenes, not on the
Aloe pair: that is the real-data test set. The cache is keyed by the ONNX graph's sha256
(engine_spec.calibration_cache_path), so scales from other weights or another input size are never reused."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..config import INPUT_NAMES
from ..data.synthetic import SceneParams, SyntheticStereo
from ..normalisation import normalise
from .sidecar import staged

if TYPE_CHECKING:
    import tensorrt as trt
else:
    from .tensorrt_env import trt

CALIBRATION_SEED = 20240611


def read_calibration_cache(cache: Path) -> bytes | None:
    """The cached scales, or None when there are none: TensorRT then calibrates (b"" is not "none")."""
    return cache.read_bytes() if cache.is_file() else None


def write_calibration_cache(cache: Path, blob: bytes) -> None:
    with staged(cache) as tmp:
        tmp.write_bytes(blob)
        tmp.replace(cache)


def make_calibrator(height: int, width: int, max_disparity: int, samples: int, cache: Path,
                    device: torch.device, seed: int = CALIBRATION_SEED) -> trt.IInt8EntropyCalibrator2:
    data = SyntheticStereo(SceneParams(height=height, width=width, max_disparity_px=0.8 * max_disparity), seed=seed)

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.index = 0
            self.buffers = {name: torch.empty(1, 3, height, width, device=device) for name in INPUT_NAMES}

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int]:
            if self.index >= samples:
                return []  # TensorRT's "no more batches"
            sample = data[self.index]
            self.index += 1
            images = dict(zip(INPUT_NAMES, (sample.left, sample.right)))
            for name in INPUT_NAMES:  # speed does not matter here: normalise on the CPU
                self.buffers[name].copy_(torch.from_numpy(normalise(images[name])))
            torch.cuda.synchronize(device)
            return [self.buffers[name].data_ptr() for name in names]

        # The stub says Buffer; NVIDIA's documented calibrators return None for "no cache".
        def read_calibration_cache(self) -> bytes | None:  # type: ignore[override]
            return read_calibration_cache(cache)

        def write_calibration_cache(self, blob: Any) -> None:
            write_calibration_cache(cache, bytes(memoryview(blob)))

    return Calibrator()
