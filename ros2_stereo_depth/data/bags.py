"""ROS 2 bags as stereo data, read without a ROS install (the pure-Python `rosbags` package).

Accepted paths: a rosbag2 directory (metadata.yaml + .db3 or .mcap files), a single .mcap or .db3
file, or a directory holding exactly one such file. Left/right images are sensor_msgs/Image (every
encoding the node accepts, image_encoding.image_to_rgb) or sensor_msgs/CompressedImage (jpeg/png,
decoded by OpenCV), paired on header stamps, exactly or within `tolerance_s`. Each pair comes with
the camera (focal length, baseline) from the sibling camera_info topics (<...>/left/camera_info),
size-checked against the images as the node checks them; without camera_info topics it is None.

Pairing runs over the bag in record order and keeps only a few pending messages per side, so a bag
is streamed, never loaded whole. A message is paired with the nearest stamp on the other side within
the tolerance, unless the next message on its own side is nearer to that partner (then it is left
unpaired). Per-topic stamps are assumed to increase, as a camera driver publishes them.

Anything rosbags raises for a corrupt, truncated or empty bag becomes one BagError naming the file.
"""
from __future__ import annotations

import bisect
import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import cv2
import numpy as np
from torch.utils.data import Dataset

from ..geometry import StereoCamera
from ..image_encoding import ImageError, image_to_rgb
from ..pair import StereoPair
from .bag_writer import COMPRESSED_TYPE, IMAGE_TYPE, INFO_TYPE, typestore

BAG_SUFFIXES = (".mcap", ".db3")
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
# Unpaired messages kept per side while waiting for a partner; older ones are given up (counted).
MAX_PENDING = 32
_LEFT = re.compile(r"(^|/)left/image_rect[^/]*(/compressed)?$")
_RIGHT = re.compile(r"(^|/)right/image_rect[^/]*(/compressed)?$")


class BagError(ValueError):
    """A bag that cannot be used as stereo data; the text names the file and the problem."""


def is_bag(path: str | Path) -> bool:
    """Whether `path` looks like a ROS 2 bag (it may still turn out unreadable)."""
    p = Path(path)
    if p.is_file():
        return p.suffix in BAG_SUFFIXES
    return p.is_dir() and ((p / "metadata.yaml").is_file() or len(_storage_files(p)) == 1)


def _storage_files(directory: Path) -> list[Path]:
    return sorted(f for f in directory.iterdir() if f.suffix in BAG_SUFFIXES and f.is_file())


def _reader_path(path: Path) -> Path:
    """What rosbags opens: the rosbag2 directory, or the single storage file."""
    if not path.exists():
        raise BagError(f"{path}: no such bag file or directory")
    if path.is_file():
        if path.suffix not in BAG_SUFFIXES:
            raise BagError(f"{path}: not a ROS 2 bag (expected a .mcap or .db3 file or a rosbag2 directory)")
        return path
    if (path / "metadata.yaml").is_file():
        return path
    files = _storage_files(path)
    if len(files) != 1:
        raise BagError(f"{path}: not a ROS 2 bag directory (no metadata.yaml, and {len(files)} .mcap/.db3 "
                       "files instead of one)")
    return files[0]


@contextmanager
def _bag_errors(path: Path) -> Iterator[None]:
    """Whatever rosbags (or sqlite, or a decompressor) raises while reading becomes one BagError."""
    try:
        yield
    except BagError:
        raise
    except Exception as error:  # noqa: BLE001 (every failure inside the reader means the same to the user)
        detail = " ".join(str(error).split())[:300] or type(error).__name__  # one line, even for YAML errors
        raise BagError(f"{path}: corrupt or truncated bag, cannot read it ({detail})") from None


@contextmanager
def _open(path: Path) -> Iterator[Any]:
    from rosbags.rosbag2 import Reader  # noqa: PLC0415 (only for bag work)
    with _bag_errors(path):
        reader = Reader(_reader_path(path))
        reader.open()
    try:
        yield reader
    finally:
        with _bag_errors(path):
            reader.close()


def stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def info_topic(image_topic: str) -> str:
    """image_transport's camera_info for an image topic: <ns>/image_rect[/compressed] -> <ns>/camera_info."""
    base = image_topic.removesuffix("/compressed")
    return f"{base.rsplit('/', 1)[0]}/camera_info" if "/" in base else "camera_info"


@dataclass(frozen=True)
class StereoTopics:
    left: str
    right: str
    left_info: str
    right_info: str


def find_stereo_topics(path: Path, topic_types: dict[str, str], left_topic: str | None = None,
                       right_topic: str | None = None) -> StereoTopics:
    """The image topics to pair: given, or the one .../left/image_rect* + .../right/image_rect* pair."""
    images = sorted(t for t, kind in topic_types.items() if kind in IMAGE_TYPES)
    if not topic_types:
        raise BagError(f"{path}: empty bag (no topics)")
    if left_topic is None and right_topic is None:
        lefts = [t for t in images if _LEFT.search(t)]
        rights = [t for t in images if _RIGHT.search(t)]
        pairs = [(left, right) for left in lefts for right in rights if _other_side(left) == right]
        if len(pairs) != 1:
            found = "several" if pairs else "no"
            raise BagError(f"{path}: {found} .../left/image_rect* + .../right/image_rect* topic pairs found "
                           f"(left candidates: {lefts or 'none'}, right candidates: {rights or 'none'}, "
                           f"image topics: {images or 'none'}); give left_topic and right_topic")
        left_topic, right_topic = pairs[0]
    elif left_topic is None or right_topic is None:
        raise BagError(f"{path}: give both left_topic and right_topic, or neither (image topics: {images or 'none'})")
    for topic in (left_topic, right_topic):
        if topic not in topic_types:
            raise BagError(f"{path}: no topic {topic!r} in the bag (image topics: {images or 'none'})")
        if topic_types[topic] not in IMAGE_TYPES:
            raise BagError(f"{path}: topic {topic!r} is {topic_types[topic]}, not an Image or CompressedImage")
    return StereoTopics(left_topic, right_topic, info_topic(left_topic), info_topic(right_topic))


def _other_side(left_topic: str) -> str:
    head, sep, tail = left_topic.rpartition("left/image_rect")
    return f"{head}right/image_rect{tail}" if sep else ""


T = TypeVar("T")


@dataclass
class StampPairer(Generic[T]):
    """Pairs two stamp-ordered streams (0 = left, 1 = right) within `tolerance_ns` (0: exact)."""
    tolerance_ns: int
    max_pending: int = MAX_PENDING
    queues: tuple[deque[tuple[int, T]], deque[tuple[int, T]]] = field(default_factory=lambda: (deque(), deque()))
    unpaired: list[int] = field(default_factory=lambda: [0, 0])  # per side, given up

    def push(self, side: int, stamp: int, item: T) -> list[tuple[int, T, int, T]]:
        queue = self.queues[side]
        if queue and stamp < queue[-1][0]:  # out of order: keep the queue sorted
            keys = [s for s, _ in queue]
            queue.insert(bisect.bisect_right(keys, stamp), (stamp, item))
        else:
            queue.append((stamp, item))
        pairs = self._match(final=False)
        while len(queue) > self.max_pending:
            queue.popleft()
            self.unpaired[side] += 1
        return pairs

    def finish(self) -> list[tuple[int, T, int, T]]:
        pairs = self._match(final=True)
        for side, queue in enumerate(self.queues):
            self.unpaired[side] += len(queue)
            queue.clear()
        return pairs

    def _match(self, final: bool) -> list[tuple[int, T, int, T]]:
        lefts, rights = self.queues
        out = []
        while lefts and rights:
            (ls, left), (rs, right) = lefts[0], rights[0]
            if ls < rs - self.tolerance_ns:
                lefts.popleft()
                self.unpaired[0] += 1
                continue
            if rs < ls - self.tolerance_ns:
                rights.popleft()
                self.unpaired[1] += 1
                continue
            # Within tolerance. Only the earlier one's next message can be a nearer partner.
            earlier, other_stamp, gap = (lefts, rs, rs - ls) if ls < rs else (rights, ls, ls - rs)
            if gap > 0:
                if len(earlier) < 2:
                    if not final:
                        break  # wait for that next message
                elif abs(earlier[1][0] - other_stamp) < gap:
                    earlier.popleft()
                    self.unpaired[0 if earlier is lefts else 1] += 1
                    continue
            lefts.popleft()
            rights.popleft()
            out.append((ls, left, rs, right))
        return out


@dataclass(frozen=True)
class BagFrame:
    """One stereo pair from a bag: images (no ground truth) and the camera at image resolution."""
    stamp_ns: int  # the left image's header stamp
    right_stamp_ns: int
    pair: StereoPair
    camera: StereoCamera | None  # None: the bag has no camera_info for these topics

    @property
    def fx_px(self) -> float | None:
        return None if self.camera is None else self.camera.fx_px

    @property
    def baseline_m(self) -> float | None:
        return None if self.camera is None else self.camera.baseline_m


@dataclass(frozen=True)
class _InfoTrack:
    """A camera_info topic as the stamps where its content changed (a recording repeats it every frame)."""
    stamps: list[int]
    infos: list[Any]

    def at(self, stamp: int) -> Any | None:
        """The info in force at `stamp`: the latest one stamped at or before it, else the first."""
        if not self.infos:
            return None
        return self.infos[max(bisect.bisect_right(self.stamps, stamp) - 1, 0)]


def _info_key(info: Any) -> tuple[Any, ...]:
    return int(info.width), int(info.height), tuple(np.asarray(info.p, np.float64).tolist())


def decode_image(msg: Any, msgtype: str) -> np.ndarray:
    """Image or CompressedImage -> (H,W,3) uint8 RGB; ImageError if it cannot be decoded."""
    if msgtype == IMAGE_TYPE:
        return image_to_rgb(msg)
    bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError("data", f"cannot decode the {len(msg.data)}-byte CompressedImage (format {msg.format!r})")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def camera_for(left_info: Any, right_info: Any, shape: tuple[int, int], topics: StereoTopics) -> StereoCamera:
    """Check the infos describe the images' resolution (as the node does) -> StereoCamera; ValueError naming
    the topic otherwise."""
    h, w = shape
    for topic, info in ((topics.left_info, left_info), (topics.right_info, right_info)):
        if (int(info.height), int(info.width)) != (h, w):
            raise ValueError(f"{topic}: camera_info is {info.width}x{info.height} but the image is {w}x{h}; "
                             "they must describe the same resolution")
    try:
        return StereoCamera.from_projection(left_info.p, right_info.p, w, h)
    except ValueError as error:
        raise ValueError(f"{topics.left_info} / {topics.right_info}: {error}") from None


@dataclass(frozen=True)
class _Key:
    """Where a message is in the bag, for random access: receive time and rank among equal times."""
    timestamp_ns: int
    rank: int


class StereoBag:
    """A bag's stereo pairs. Iterate for one streaming pass; `index()` + `frame(key...)` for random access."""

    def __init__(self, path: str | Path, left_topic: str | None = None, right_topic: str | None = None,
                 tolerance_s: float = 0.0) -> None:
        self.path = Path(path)
        if tolerance_s < 0:
            raise ValueError(f"tolerance_s must be >= 0, not {tolerance_s}")
        self.tolerance_ns = int(round(tolerance_s * 1e9))
        with _open(self.path) as reader:
            with _bag_errors(self.path):
                topic_types = {c.topic: c.msgtype for c in reader.connections}
                counts = {c.topic: 0 for c in reader.connections}
                for c in reader.connections:
                    counts[c.topic] += c.msgcount
            self.topics = find_stereo_topics(self.path, topic_types, left_topic, right_topic)
            self.msgtypes = {t: topic_types[t] for t in (self.topics.left, self.topics.right)}
            if counts[self.topics.left] == 0 or counts[self.topics.right] == 0:
                raise BagError(f"{self.path}: empty bag: {counts[self.topics.left]} messages on {self.topics.left}, "
                               f"{counts[self.topics.right]} on {self.topics.right}")
            self.infos = tuple(self._read_infos(reader, topic) for topic in (self.topics.left_info, self.topics.right_info))
        self.unpaired = [0, 0]  # of the last complete pass
        self._random_reader: Any = None
        self._random_reader_pid = -1

    def _read_infos(self, reader: Any, topic: str) -> _InfoTrack:
        track = _InfoTrack([], [])
        connections = [c for c in reader.connections if c.topic == topic and c.msgtype == INFO_TYPE]
        if not connections:
            return track
        last = None
        with _bag_errors(self.path):
            for connection, _, raw in reader.messages(connections=connections):
                info = typestore().deserialize_cdr(raw, connection.msgtype)
                if _info_key(info) != last:
                    last = _info_key(info)
                    track.stamps.append(stamp_ns(info))
                    track.infos.append(info)
        order = np.argsort(track.stamps, kind="stable")
        return _InfoTrack([track.stamps[i] for i in order], [track.infos[i] for i in order])

    def _pairs(self, make_item: Callable[[Any, int, int, Any], T]) -> Iterator[tuple[int, T, int, T]]:
        """One pass over the image topics: (left stamp, item, right stamp, item) per pair, in order."""
        pairer: StampPairer[T] = StampPairer(self.tolerance_ns)
        side_of = {self.topics.left: 0, self.topics.right: 1}
        last_time: dict[str, tuple[int, int]] = {}  # topic -> (receive time, rank): for _Key
        with _open(self.path) as reader:
            connections = [c for c in reader.connections if c.topic in side_of]
            with _bag_errors(self.path):
                for connection, timestamp, raw in reader.messages(connections=connections):
                    msg = typestore().deserialize_cdr(raw, connection.msgtype)
                    previous = last_time.get(connection.topic)
                    rank = previous[1] + 1 if previous is not None and previous[0] == timestamp else 0
                    last_time[connection.topic] = (timestamp, rank)
                    yield from pairer.push(side_of[connection.topic], stamp_ns(msg),
                                           make_item(msg, timestamp, rank, connection))
            yield from pairer.finish()
        self.unpaired = list(pairer.unpaired)

    def __iter__(self) -> Iterator[BagFrame]:
        for left_stamp, left, right_stamp, right in self._pairs(lambda msg, *_: msg):
            yield self._frame(left_stamp, left, right_stamp, right)

    def index(self) -> list[tuple[_Key, _Key]]:
        """Where each pair's two messages are (one pass; images are not decoded)."""
        return [(left, right) for _, left, _, right in self._pairs(lambda _, t, rank, __: _Key(t, rank))]

    def frame(self, left: _Key, right: _Key) -> BagFrame:
        """The pair at the given keys (from `index`), read by receive time."""
        reader = self._reader()
        msgs = []
        for topic, key in ((self.topics.left, left), (self.topics.right, right)):
            connections = [c for c in reader.connections if c.topic == topic]
            with _bag_errors(self.path):
                found = [raw for _, _, raw in reader.messages(connections=connections, start=key.timestamp_ns,
                                                              stop=key.timestamp_ns + 1)]
                if len(found) <= key.rank:
                    raise BagError(f"{self.path}: {topic} has no message at {key.timestamp_ns} ns any more "
                                   "(was the bag changed?)")
                msgs.append(typestore().deserialize_cdr(found[key.rank], self.msgtypes[topic]))
        return self._frame(stamp_ns(msgs[0]), msgs[0], stamp_ns(msgs[1]), msgs[1])

    def _reader(self) -> Any:
        # One reader per process: DataLoader workers must not share an sqlite connection or file offset.
        if self._random_reader is None or self._random_reader_pid != os.getpid():
            from rosbags.rosbag2 import Reader  # noqa: PLC0415
            with _bag_errors(self.path):
                reader = Reader(_reader_path(self.path))
                reader.open()
            self._random_reader, self._random_reader_pid = reader, os.getpid()
        return self._random_reader

    def close(self) -> None:
        if self._random_reader is not None and self._random_reader_pid == os.getpid():
            with _bag_errors(self.path):
                self._random_reader.close()
        self._random_reader = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_random_reader": None, "_random_reader_pid": -1}

    def _frame(self, left_stamp: int, left_msg: Any, right_stamp: int, right_msg: Any) -> BagFrame:
        images = []
        for topic, msg in ((self.topics.left, left_msg), (self.topics.right, right_msg)):
            try:
                images.append(decode_image(msg, self.msgtypes[topic]))
            except ImageError as error:
                raise BagError(f"{self.path}: {topic} at stamp {stamp_ns(msg)} ns: {error}") from None
        left, right = images
        if left.shape != right.shape:
            raise BagError(f"{self.path}: {self.topics.right} at stamp {right_stamp} ns is "
                           f"{right.shape[1]}x{right.shape[0]} but {self.topics.left} is {left.shape[1]}x{left.shape[0]}; "
                           "left and right must have the same size")
        camera = None
        left_info, right_info = self.infos[0].at(left_stamp), self.infos[1].at(right_stamp)
        if left_info is not None and right_info is not None:
            try:
                camera = camera_for(left_info, right_info, left.shape[:2], self.topics)
            except ValueError as error:
                raise BagError(f"{self.path}: {error}") from None
        return BagFrame(left_stamp, right_stamp, StereoPair(left, right, None, None), camera)


class BagDataset(Dataset):
    """A bag's stereo pairs with random access, for training (no ground truth: self-supervised only).
    Opening it makes one pass to index the pairs; items are read from the bag when asked for."""

    def __init__(self, bag: StereoBag) -> None:
        self.bag = bag
        self.keys = bag.index()
        if not self.keys:
            raise BagError(f"{bag.path}: no stereo pairs: {bag.unpaired[0]} {bag.topics.left} and "
                           f"{bag.unpaired[1]} {bag.topics.right} messages, none with matching stamps "
                           f"(tolerance {bag.tolerance_ns / 1e9:g} s)")

    def __len__(self) -> int:
        return len(self.keys)

    def frame(self, index: int) -> BagFrame:
        return self.bag.frame(*self.keys[index])

    def __getitem__(self, index: int) -> StereoPair:
        return self.frame(index).pair


def open_bag_dataset(path: str | Path, left_topic: str | None = None, right_topic: str | None = None,
                     tolerance_s: float = 0.0) -> BagDataset:
    return BagDataset(StereoBag(path, left_topic, right_topic, tolerance_s))
