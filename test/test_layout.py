"""README's "Repository layout" block matches the tree: every file it names exists, and every module of the
package is named (a new module without a line there fails here)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "ros2_stereo_depth"
FILE = re.compile(r"^[\w.]+\.(?:py|txt|xml|yaml|rviz|json|safetensors|md)$")
FOLDER = re.compile(r"^\w+/$")


def layout_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Repository layout"):]
    start = section.index("```\n") + 4
    return section[start:section.index("```", start)].splitlines()


def listed_paths() -> set[Path]:
    """Indented lines are inside the package, the others at the repository root; a `name/` word switches
    the folder the following file names are in, until the next one."""
    found: set[Path] = set()
    folder = Path()
    for line in layout_block():
        base = ROOT / PACKAGE if line.startswith(" ") else ROOT
        if not line.startswith(" ") and line.split()[0] == f"{PACKAGE}/":
            continue
        if not line.startswith("                "):  # a new entry, not a continuation line
            folder = Path()
        for word in line.split():
            word = word.strip("(),;`")
            if FOLDER.match(word):
                folder = Path(word)
            elif FILE.match(word):
                found.add(base / folder / word)
    return found


def test_every_listed_file_exists() -> None:
    missing = sorted(str(p.relative_to(ROOT)) for p in listed_paths() if not p.is_file())
    assert not missing, f"README 'Repository layout' names files that do not exist: {missing}"


def test_every_package_module_is_listed() -> None:
    listed = listed_paths()
    modules = {p for p in (ROOT / PACKAGE).rglob("*.py") if p.name != "__init__.py"}
    unlisted = sorted(str(p.relative_to(ROOT)) for p in modules - listed)
    assert not unlisted, f"modules missing from README 'Repository layout': {unlisted}"
    assert len(listed & modules) > 50  # the parser found the package block
