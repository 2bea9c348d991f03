"""The JSON sidecar beside every artifact (`NAME.json` beside `NAME.safetensors|.onnx|.engine`): one home
for reading, writing and verifying it.

Every sidecar records its kind, the format version and the sha256 of its artifact, so a modified or
swapped file is refused. Artifacts are written under a temporary name and published sidecar first,
artifact last: a crash or a failed build never leaves an artifact without its sidecar.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SIDECAR_VERSION = 2
KINDS = ("weights", "onnx", "engine", "checkpoint")


class SidecarError(ValueError):
    """A sidecar is missing, unreadable, of another kind, or does not match its artifact."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(artifact: str | Path) -> Path:
    return Path(artifact).with_suffix(".json")


def temporary_path(path: str | Path) -> Path:
    """A hidden name beside `path` (same file system, so the final rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write under a temporary name, then rename: readers never see half a file."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def staged(artifact: str | Path) -> Iterator[Path]:
    """A temporary path to write `artifact` to before `publish`; removed if anything fails."""
    artifact = Path(artifact)
    artifact.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(artifact)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def publish(written: str | Path, artifact: str | Path, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Move the finished file `written` to `artifact` with its sidecar (`fields` + kind, version, sha256).
    The sidecar is renamed into place first, the artifact last."""
    if kind not in KINDS:
        raise ValueError(f"sidecar kind {kind!r} is not one of {KINDS}")
    artifact = Path(artifact)
    meta = {"kind": kind, "sidecar_version": SIDECAR_VERSION, **fields, "sha256": sha256_file(written)}
    write_json(sidecar_path(artifact), meta)
    os.replace(written, artifact)
    return meta


def read_sidecar(artifact: str | Path, kind: str) -> dict[str, Any] | None:
    """The sidecar of `artifact`, or None when there is none. SidecarError when it is unreadable or
    of another kind or version."""
    path = sidecar_path(artifact)
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SidecarError(f"{path}: unreadable sidecar ({error})") from None
    if not isinstance(meta, dict) or meta.get("kind") != kind:
        found = meta.get("kind") if isinstance(meta, dict) else type(meta).__name__
        raise SidecarError(f"{path}: not a {kind} sidecar (kind {found!r})")
    if meta.get("sidecar_version") != SIDECAR_VERSION:
        raise SidecarError(f"{path}: sidecar version {meta.get('sidecar_version')!r}, this package reads "
                           f"{SIDECAR_VERSION}")
    return meta


def sidecar_problems(artifact: str | Path, kind: str) -> tuple[dict[str, Any] | None, list[str]]:
    """(sidecar, problems): the artifact exists, has a readable sidecar of `kind` and its sha256 matches."""
    artifact = Path(artifact)
    if not artifact.is_file():
        return None, [f"{kind} {artifact} not found"]
    try:
        meta = read_sidecar(artifact, kind)
    except SidecarError as error:
        return None, [str(error)]
    if meta is None:
        return None, [f"{kind} {artifact} has no sidecar {sidecar_path(artifact)} (refusing a file of unknown origin)"]
    digest = sha256_file(artifact)
    if digest != meta.get("sha256"):
        return meta, [f"{kind} {artifact} sha256 {digest[:12]} does not match its sidecar "
                      f"({str(meta.get('sha256'))[:12]}): modified or foreign file, refused"]
    return meta, []


def verify_sidecar(artifact: str | Path, kind: str) -> dict[str, Any]:
    """The sidecar of `artifact` after the checks of sidecar_problems; SidecarError listing them."""
    meta, problems = sidecar_problems(artifact, kind)
    if problems or meta is None:
        raise SidecarError("; ".join(problems))
    return meta
