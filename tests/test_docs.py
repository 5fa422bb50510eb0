"""The docs a newcomer reads resolve inside the repository: every relative link and anchor, every source citation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = ("recon", "grounding", "temporal", "viewer", "howto3d", "synth", "benchmarks", "tests")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("md", DOCS, ids=lambda p: p.name)
def test_links_resolve(md: Path) -> None:
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: outside the repository by design
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        if ROOT not in dest.parents and dest != ROOT:
            broken.append(f"{target} (outside the repository)")
        elif not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor})")
    assert not broken, f"{md.name}: " + "; ".join(broken)


def test_citations_name_a_listed_source() -> None:
    """Code and docs cite sources as ``[001] §5.3.1``; each id must be an entry of docs/references.md."""
    listed = set(re.findall(r"^## \[(\d{3})\]$", (ROOT / "docs" / "references.md").read_text(), flags=re.M))
    files = [p for d in CODE for p in (ROOT / d).rglob("*.py")] + DOCS
    unresolved = []
    for f in files:
        text = f.read_text()
        unresolved += [f"{f.relative_to(ROOT)}: {m}" for m in re.findall(r"(?:source|spec|seed)s? §[\d.]+", text)]
        unresolved += [f"{f.relative_to(ROOT)}: [{i}]" for i in re.findall(r"\[(0\d\d)\]", text) if i not in listed]
        unresolved += [f"{f.relative_to(ROOT)}: ../shared" for _ in re.findall(r"\.\./shared/", text)]
    assert not unresolved, "; ".join(unresolved)
