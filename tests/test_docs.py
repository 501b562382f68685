"""Every Python code block in docs/ runs, in order, one namespace per page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PAGES = sorted(DOCS.glob("*.md"))
README = DOCS.parent / "README.md"


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


@pytest.mark.parametrize("page", [*PAGES, README], ids=lambda p: p.name)
def test_code_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem}"}
    for number, block in enumerate(python_blocks(page)):
        code = compile(block, f"{page.name}[block {number}]", "exec", dont_inherit=True)
        exec(code, namespace)


def test_every_page_is_in_the_nav():
    nav = (DOCS.parent / "mkdocs.yml").read_text()
    for page in PAGES:  # (the README is the repository's front page, not the site's)
        assert page.name in nav, f"{page.name} is not in mkdocs.yml's nav"
