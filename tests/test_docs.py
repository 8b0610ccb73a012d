"""The documentation a newcomer reads first: every relative link resolves (file and heading anchor), every command the
README's tables name is a console script the package installs, and every `make` target it names exists."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "checkpoints/palme-tiny/README.md", "results/README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file: lowercase, punctuation dropped, spaces as hyphens."""
    out = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"#{1,6}\s+(.*)", line)
        if m:
            text = re.sub(r"[`*_]", "", m.group(1)).strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return out


def relative_links(doc: str) -> list[tuple[str, str]]:
    """(target file, anchor) of every link in `doc` that is not a web address."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    out = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        out.append((path, anchor))
    return out


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_of_the_docs_points_at_an_existing_file_and_heading(doc):
    links = relative_links(doc)
    assert links, f"{doc} links nowhere: the parser is broken"
    for path, anchor in links:
        target = (ROOT / doc).parent / path if path else ROOT / doc
        assert target.exists(), f"{doc} links to {path}, which does not exist"
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), f"{doc} links to {path}#{anchor}: no such heading in {target.name}"


def test_the_readme_names_only_installed_commands_and_existing_make_targets():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    scripts = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"])
    presets = {f.stem for f in (ROOT / "configs" / "model").glob("*.yaml")}
    named = set(re.findall(r"`(palme-[a-z0-9-]+)", readme)) - presets
    assert named and named <= scripts, f"the README names {sorted(named - scripts)}, which pyproject.toml does not install"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", makefile, flags=re.MULTILINE))
    used = set(re.findall(r"make (?:[A-Z_]+=\S+ )*([a-z][\w-]*)", readme))
    assert used and used <= targets, f"the README runs make {sorted(used - targets)}, which the Makefile lacks"
