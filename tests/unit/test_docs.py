"""The documentation matches the code: every setting the worker reads is documented."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def settings_read() -> set[str]:
    """The environment variables ``load_settings`` reads (its ``get("NAME", ...)`` calls)."""
    source = (ROOT / "steamprice" / "settings.py").read_text(encoding="utf-8")
    names = set(re.findall(r'\bget\(\s*"([A-Z][A-Z0-9_]+)"', source))
    assert len(names) > 40, "load_settings no longer reads settings through get(...)"
    return names


def test_every_setting_is_documented() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in DOCS)
    undocumented = sorted(n for n in settings_read() if f"`{n}`" not in text)
    assert not undocumented, f"settings missing from README.md and docs/: {undocumented}"


def test_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    assert "make run" in readme and "make test" in readme
    for link in re.findall(r"\]\((docs/[^)]+)\)", readme):
        path, _, anchor = link.partition("#")
        assert (ROOT / path).is_file(), link
        if anchor:
            assert anchor in anchors(ROOT / path), link


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}


def test_links_between_docs_pages_find_their_section() -> None:
    for page in DOCS:
        text = page.read_text(encoding="utf-8")
        for target, anchor in re.findall(r"\]\(([\w./-]*\.md)#([\w-]+)\)", text):
            assert anchor in anchors(page.parent / target), f"{page.name}: {target}#{anchor}"
