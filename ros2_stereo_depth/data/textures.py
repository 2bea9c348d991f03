"""Natural photos for scene textures, from freely licensed collections that packages ship.

`TEXTURE_SOURCES` lists where each collection installs and under what licence (docs/DATA_SOURCES.md
is the human-readable copy; `make textures` installs the Debian ones, scikit-image comes from
requirements.txt). A `TextureBank` is an explicit object the caller builds from the sources it
chooses and passes to the generator: nothing is read behind the caller's back, and `bank.names`
records exactly which files a training run used.

No image of a stereo (or optical-flow) benchmark may become a texture, whatever folder a caller
passes: `is_excluded` rejects them by name and by content hash, and `TextureBank` applies it to
every file before reading it.
"""
from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .segmentation import Superpixels, merge_superpixels, superpixels


@dataclass(frozen=True)
class TextureSource:
    name: str
    package: str  # where the files come from: "debian:<package>" or "pypi:<project>"
    directory: Path
    patterns: tuple[str, ...]  # file-name globs inside `directory`
    licence: str


def _python_package_dir(package: str, subdir: str) -> Path:
    """The installed folder of a Python package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return Path("/nonexistent") / package / subdir
    return Path(list(spec.submodule_search_locations)[0]) / subdir


_LOMIRI = Path("/usr/share/backgrounds")

TEXTURE_SOURCES: tuple[TextureSource, ...] = (
    TextureSource("scikit-image data", "pypi:scikit-image", _python_package_dir("skimage", "data"),
                  ("astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
                   "grass.png", "gravel.png", "rocket.jpg"),
                  "CC0-1.0 / public domain (per image, see skimage.data docstrings)"),
    TextureSource("MATE nature backgrounds", "debian:mate-backgrounds", Path("/usr/share/backgrounds/mate/nature"),
                  ("*.jpg",), "GPL-2+"),
    TextureSource("Lomiri wallpapers 16.04", "debian:lomiri-wallpapers-16.04", _LOMIRI,
                  ("aitzgorri_by_Aitzol_Berasategi.jpg", "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg",
                   "friends_by_Aitzol_Berasategi.jpg", "greentock_by_Peter_Nerlich.jpg", "life_by_Aitzol_Berasategi.jpg",
                   "Picture_0B_by_freespace.jpg", "Picture_1A_by_freespace.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
                   "seeding_by_Clements_Engelhardt.jpg", "sunset_by_Aitzol_Berasategi.jpg",
                   "umang_by_Abhishek_Mudgal.jpg", "Wine_by_Jakkub_Mede.jpg", "free_by_Peter_Nerlich.jpg"),
                  "CC-BY-4.0 / CC-BY-SA-4.0 / CC0-1.0 (per image, see the package's copyright file)"),
    TextureSource("Lomiri wallpapers 20.04", "debian:lomiri-wallpapers-20.04", _LOMIRI,
                  ("Infinite-Sea_by_Aury88.jpg", "Kleiber_by_Lukas_Baubkus.jpg"), "CC-BY-SA-3.0"),
)

# Stereo and optical-flow benchmark images: never a texture, so evaluation stays zero-shot.
# Matched case-insensitively against the file name and every folder name of its path.
EXCLUDED_NAME_PATTERNS: tuple[str, ...] = (
    "*middlebury*", "*kitti*", "*eth3d*", "*sceneflow*", "*scene_flow*", "*flyingthings*", "*monkaa*",
    "*sintel*", "*tsukuba*", "*holopix*", "*instereo*", "*drivingstereo*",
    "aloe*",  # Middlebury Aloe (opencv-doc: aloeL.jpg, aloeR.jpg, aloeGT.png): our test set
    "motorcycle*",  # Middlebury 2014 Motorcycle (scikit-image data)
    "im0.*", "im1.*", "disp0*", "disp1*", "view[0-6].*", "scene1.row*",  # Middlebury file naming
    "left*", "right*",  # opencv-doc's stereo/calibration pairs (left01.jpg ... right14.jpg, left.jpg)
    "basketball*", "rubberwhale*",  # Middlebury optical-flow pairs (opencv-doc)
    "graf*", "leuven*",  # Oxford affine-covariant benchmark pairs (opencv-doc)
)
# The same images by content, in case a copy is renamed: SHA-256 of opencv-doc's aloeL.jpg,
# aloeR.jpg, aloeGT.png and scikit-image's motorcycle_left.png, motorcycle_right.png.
EXCLUDED_SHA256: frozenset[str] = frozenset({
    "cce5736808efe80d9f04b118dbb978c344d4345672b332718c3e039a3eeb8eee",
    "9b23100df31a846bc6e6a6545563b2b4120b948c9835c7d36cde00af77f4503e",
    "39ce4f3cb48d797d1091c5152f93361d8104298c337f8a1c134d87dda3442c04",
    "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
    "5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797",
})
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def is_excluded(path: Path) -> bool:
    """True for a benchmark image (by any name in its path, or by content when the file exists)."""
    parts = [part.lower() for part in Path(path).parts]
    if any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in EXCLUDED_NAME_PATTERNS):
        return True
    if Path(path).is_file():
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() in EXCLUDED_SHA256
    return False


def source_files(source: TextureSource) -> list[Path]:
    """The image files of `source` that are installed and not excluded, sorted by name."""
    if not source.directory.is_dir():
        return []
    files = {path for pattern in source.patterns for path in source.directory.glob(pattern)}
    return sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not is_excluded(p))


def texture_record(sources: tuple[TextureSource, ...] | list[TextureSource] = TEXTURE_SOURCES) -> dict[str, str]:
    """{"<package>/<file name>": sha256} of every file TextureBank.load(sources) may read: what a training
    run records in its weights sidecar, so that anyone can check no benchmark image was among them."""
    return {f"{source.package}/{path.name}": hashlib.sha256(path.read_bytes()).hexdigest()
            for source in sources for path in source_files(source)}


def _read_reduced(path: Path, max_side_px: int) -> np.ndarray | None:
    """BGR image, decoded at 1/2, 1/4 or 1/8 size when that still leaves max_side_px (JPEG decoding
    of multi-megapixel wallpapers dominates loading otherwise)."""
    header = cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_8)
    if header is None:
        return None
    longest_at_8 = max(header.shape[:2])
    for factor, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2)):
        if longest_at_8 * 8 // factor >= max_side_px:
            return header if factor == 8 else cv2.imread(str(path), flag)
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


@dataclass
class Photo:
    name: str  # source-relative name, for training records
    image: np.ndarray  # (H, W, 3) uint8 RGB, longest side <= the bank's max_side_px
    segments: Superpixels
    smaller: list[np.ndarray]  # the image at 1/2 and 1/4 size: cheap, alias-free downscaled crops


@dataclass
class PhotoCrop:
    image: np.ndarray  # (h, w, 3) uint8 RGB
    regions: np.ndarray  # (h, w) int32 region index 0..count-1, outlines on the photo's edges
    count: int


class TextureBank:
    """The photos a generator may use, loaded and segmented once. Build it explicitly and pass it."""

    def __init__(self, photos: list[Photo]) -> None:
        self.photos = photos

    @classmethod
    def load(cls, sources: tuple[TextureSource, ...] | list[TextureSource] = TEXTURE_SOURCES,
             max_side_px: int = 1024, max_images: int | None = None) -> "TextureBank":
        photos: list[Photo] = []
        for source in sources:
            for path in source_files(source):
                if max_images is not None and len(photos) >= max_images:
                    break
                if is_excluded(path):  # source_files already filtered; re-checked where the file is read
                    continue
                image = _read_reduced(path, max_side_px)
                if image is None or min(image.shape[:2]) < 64:
                    continue
                scale = min(1.0, max_side_px / max(image.shape[:2]))
                if scale < 1.0:
                    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
                smaller = [cv2.pyrDown(rgb)]
                smaller.append(cv2.pyrDown(smaller[0]))
                photos.append(Photo(f"{source.package}/{path.name}", rgb, superpixels(rgb), smaller))
        return cls(photos)

    @property
    def names(self) -> list[str]:
        return [photo.name for photo in self.photos]

    def __len__(self) -> int:
        return len(self.photos)

    def crop(self, rng: np.random.Generator, height: int, width: int, regions: int,
             avoid: int | None = None) -> tuple[int, PhotoCrop]:
        """A random photo (not index `avoid`), scaled, flipped and cropped to (height, width), with its
        superpixels merged into about `regions` regions. Returns the photo index and the crop."""
        choices = [i for i in range(len(self.photos)) if i != avoid] or [0]
        index = int(choices[int(rng.integers(len(choices)))])
        photo = self.photos[index]
        ph, pw = photo.image.shape[:2]
        smallest = max(height / ph, width / pw)  # output px per photo px that still fills the crop
        scale = max(smallest, float(np.exp(rng.uniform(np.log(0.35), np.log(1.5)))))
        crop_h, crop_w = height / scale, width / scale
        y0, x0 = rng.uniform(0, max(0.0, ph - crop_h)), rng.uniform(0, max(0.0, pw - crop_w))
        rows = np.minimum((y0 + (np.arange(height) + 0.5) / scale).astype(np.int64), ph - 1)
        cols = np.minimum((x0 + (np.arange(width) + 0.5) / scale).astype(np.int64), pw - 1)
        flip = rng.random() < 0.5
        if flip:
            cols = cols[::-1]
        level = int(np.clip(np.floor(np.log2(1.0 / scale)), 0, 2))  # 2^level photo px per level px
        source = photo.image if level == 0 else photo.smaller[level - 1]
        step = 2 ** level
        region = (slice(int(rows[0]) // step, int(rows[-1]) // step + 1),
                  slice(int(cols.min()) // step, int(cols.max()) // step + 1))
        image = cv2.resize(source[region], (width, height), interpolation=cv2.INTER_LINEAR)
        if flip:
            image = image[:, ::-1]
        if regions <= 1:
            return index, PhotoCrop(np.ascontiguousarray(image), np.zeros((height, width), np.int32), 1)
        labels = photo.segments.labels[np.ix_(rows, cols)]
        present = np.flatnonzero(np.bincount(labels.ravel(), minlength=len(photo.segments.colour_lab)))
        centre = photo.segments.centre_xy[present]
        crop_xy = np.stack([(centre[:, 0] - x0) * scale, (centre[:, 1] - y0) * scale], 1)
        position_weight = rng.uniform(0.3, 1.2) * 100.0 / max(height, width)  # Lab units per px: compact regions
        features = np.concatenate([photo.segments.colour_lab[present], crop_xy * position_weight], 1)
        groups = merge_superpixels(rng, features.astype(np.float32), regions)
        lookup = np.zeros(len(photo.segments.colour_lab), np.int32)
        lookup[present] = groups
        return index, PhotoCrop(np.ascontiguousarray(image), lookup[labels], int(groups.max()) + 1)
