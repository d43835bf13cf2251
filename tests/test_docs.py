"""The README and docs/ hold together in a clone: every relative link and anchor resolves, nothing points outside."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    found = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_resolves_inside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text and "shared/" not in text.replace("pipelines/simulated", "")
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # https://... pages outside
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.is_relative_to(REPO) and resolved.exists(), f"{page.name}: {target} does not resolve"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{page.name}: no heading for #{anchor} in {resolved.name}"


def test_the_readme_is_a_users_guide() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    headings = [line for line in readme.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Quickstart" and "uv run cohere-events demo" in readme and "uv run pytest" in readme
    for topic in ("Use your own key", "Run it from cron", "Alerts and exit codes", "Limits"):
        assert f"## {topic}" in headings
    assert len(readme.splitlines()) < 250
    assert all((REPO / "docs" / name).exists() for name in re.findall(r"\(docs/([\w-]+\.md)", readme))
