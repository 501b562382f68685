"""Every Python code block in docs/, the README and PyPI's description runs, in
order, one namespace per page, and prints exactly what the page shows.

A block fenced ```output right after a ```python block (only blank lines
between them) is what that block prints on stdout. The comparison is exact
but for trailing whitespace; a line that is only `...` stands for one or more
lines of output that truly vary (ids, times), and is for those alone. A block
that prints must show its output: otherwise the page would say nothing about
what the reader will see, and could drift from it unnoticed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
PAGES = sorted(DOCS.glob("*.md"))
README = ROOT / "README.md"
PYPI = ROOT / "PYPI.md"
WILDCARD = "..."
#: modules an optional extra brings, by the extra: a page whose samples import one
#: is skipped, with the reason, where it is not installed (the README's test
#: command installs only `test`; .ci/run installs them all, so CI runs every page)
EXTRAS = {"starlette": "web", "uvicorn": "web", "httpx": "webtest", "psycopg": "postgres",
          "psycopg_pool": "postgres"}


class Sample:
    """A ```python block and the ```output block that follows it, if any."""

    def __init__(self, page: Path, number: int, code: str, line: int):
        self.page, self.number, self.code, self.line = page, number, code, line
        self.output: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page.name}, line {self.line} (python block {self.number})"


def samples(page: Path) -> list[Sample]:
    """The page's python blocks in order, each with the output block shown after it."""
    text = page.read_text(encoding="utf-8")
    found: list[Sample] = []
    previous_end, previous_kind = 0, ""
    for match in FENCE.finditer(text):
        kind, body = match.group(1), match.group(2)
        line = text.count("\n", 0, match.start()) + 1
        if kind == "python":
            found.append(Sample(page, len(found), body, line))
        elif kind == "output":
            between = text[previous_end:match.start()]
            if previous_kind != "python" or between.strip():
                raise AssertionError(f"{page.name}, line {line}: an ```output block must come "
                                     "right after the ```python block that prints it")
            found[-1].output = body
        previous_end, previous_kind = match.end(), kind
    return found


def matches(expected: str, actual: str) -> bool:
    """`actual` is `expected`, trailing whitespace aside; a `...` line stands for one
    or more lines."""
    want = [line.rstrip() for line in expected.rstrip().splitlines()]
    got = [line.rstrip() for line in actual.rstrip().splitlines()]
    pattern = "".join(r"(?:[^\n]*\n)+" if line == WILDCARD else re.escape(line) + r"\n"
                      for line in want)
    return re.fullmatch(pattern, "".join(line + "\n" for line in got)) is not None


def run_page(page: Path) -> None:
    """Run every sample of `page` in one namespace, checking what each prints."""
    namespace = {"__name__": f"docs_{page.stem}"}
    for sample in samples(page):
        code = compile(sample.code, f"{page.name}[block {sample.number}]", "exec",
                       dont_inherit=True)
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                exec(code, namespace)
        except ModuleNotFoundError as exc:
            root = (exc.name or "").split(".")[0]
            extra = EXTRAS.get(root)
            if extra is None or importlib.util.find_spec(root) is not None:
                raise  # (not an extra's, or the extra is there: a mistake of the page)
            pytest.skip(f"{sample.where} imports {exc.name}: pip install 'genflow[{extra}]'")
        shown = printed.getvalue()
        if sample.output is None:
            assert not shown, (f"{sample.where} prints, but no ```output block follows it; "
                               f"it printed:\n{shown}")
        else:
            assert matches(sample.output, shown), (
                f"{sample.where}: the page shows\n{sample.output}\nbut the code printed\n"
                f"{shown}")


@pytest.mark.parametrize("page", [*PAGES, README, PYPI], ids=lambda p: p.name)
def test_code_blocks_run_and_print_what_the_page_shows(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_page(page)


def test_every_page_is_in_the_nav():
    nav = (DOCS.parent / "mkdocs.yml").read_text()
    for page in PAGES:  # (the README is the repository's front page, not the site's)
        assert page.name in nav, f"{page.name} is not in mkdocs.yml's nav"


# -- the checker itself ----------------------------------------------------------------------


def _page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text)
    return page


def test_output_is_compared_exactly(tmp_path):
    ok = _page(tmp_path, "```python\nprint('a  ')\nprint(1 + 1)\n```\n\n```output\na\n2\n```\n")
    run_page(ok)
    for shown in ("a\n3", "a\n2\n2", "a", "A\n2"):
        wrong = _page(tmp_path, f"```python\nprint('a')\nprint(2)\n```\n```output\n{shown}\n```\n")
        with pytest.raises(AssertionError, match="the page shows"):
            run_page(wrong)


def test_a_block_that_prints_must_show_it(tmp_path):
    with pytest.raises(AssertionError, match="prints, but no ```output block follows it"):
        run_page(_page(tmp_path, "```python\nprint('hidden')\n```\n"))
    run_page(_page(tmp_path, "```python\nx = 1\n```\n\n```python\nassert x == 1\n```\n"))


def test_an_output_block_belongs_to_the_python_block_just_before_it(tmp_path):
    for text in ("```output\n1\n```\n",
                 "```python\nprint(1)\n```\nsome words\n```output\n1\n```\n",
                 "```python\nprint(1)\n```\n```sh\nls\n```\n```output\n1\n```\n"):
        with pytest.raises(AssertionError, match="must come right after"):
            samples(_page(tmp_path, text))


@pytest.mark.parametrize(("expected", "actual", "ok"), [
    ("id ...", "id ...", True),  # only a whole line is a wildcard
    ("id ...", "id 42", False),
    ("a\n...\nz", "a\nb\nc\nz", True),
    ("a\n...\nz", "a\nz", False),  # one line or more
    ("...", "anything\nat all", True),
    ("a\n...", "a", False),
    ("a  \n\n", "a\n", True),  # trailing whitespace and blank lines
    ("a\n\nb", "a\nb", False),  # a blank line inside counts
])
def test_the_wildcard_line(expected, actual, ok):
    assert matches(expected, actual) is ok


# -- the site's diagrams (docs/hooks.py) -----------------------------------------------------


def _hooks():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Page:
    class file:  # the shape of mkdocs' Page.file
        src_path = name = "hooks-test.md"


HOOKED = '''\
Some text.

```python
import attrs
import genflow
from genflow import If, Step

print("the page prints this")


@genflow.workflow("docs-hooks-tip")
@attrs.define
class Tip:
    total: int = 0

    def definition(self):
        yield If(self.total > 100, "big bill", Step("tip 10%", lambda: None))
```

<!-- diagram: docs-hooks-tip -->
'''


def _built(monkeypatch, capsys, dot: str | None) -> str:
    if dot is None:
        monkeypatch.setenv("GENFLOW_DOT", "no-such-dot")
    else:
        monkeypatch.delenv("GENFLOW_DOT", raising=False)
    out = _hooks().on_page_markdown(HOOKED, _Page())
    assert capsys.readouterr().out == ""  # what the blocks print is not the build's output
    assert out.startswith("Some text.") and "<!-- diagram:" not in out
    assert '<pre class="mermaid">' not in out  # raw Mermaid text, without a script to draw it
    assert '<pre class="mermaid-source">\n%% genflow: workflow docs-hooks-tip' in out
    assert "<details><summary>Mermaid source</summary>" in out
    html_block = out[out.index('<div class="genflow-diagram'):]
    assert "\n\n" not in html_block.rstrip()  # one raw HTML block for Markdown
    return out


def test_a_site_built_with_graphviz_shows_svg(monkeypatch, capsys):
    from genflow.render import dot_program

    if dot_program() is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz; .ci/run does)")
    out = _built(monkeypatch, capsys, dot="dot")
    assert '<div class="genflow-diagram genflow-diagram-svg"' in out and "<svg" in out


def test_a_site_built_without_graphviz_shows_an_outline(monkeypatch, capsys):
    out = _built(monkeypatch, capsys, dot=None)
    assert '<div class="genflow-diagram genflow-diagram-outline"' in out and "<svg" not in out
    assert 'class="gf-outline"' in out and "tip 10%" in out and "big bill" in out
    assert "Graphviz's <code>dot</code> was not installed when this site was built" in out


#: lines of output as the comparison sees them: no trailing whitespace, the last one not
#: blank (trailing blank lines are dropped), none of them a wildcard
_LINES = st.lists(
    st.text(st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=12)
    .map(str.rstrip).filter(lambda line: line != WILDCARD),
    min_size=1, max_size=8,
).filter(lambda lines: lines[-1] != "")


@given(lines=_LINES, data=st.data())
def test_output_matches_itself_and_a_wildcard_stands_for_any_lines(lines, data):
    text = "\n".join(lines)
    assert matches(text, text + "\n")
    start = data.draw(st.integers(0, len(lines) - 1))
    end = data.draw(st.integers(start + 1, len(lines)))
    wild = [*lines[:start], WILDCARD, *lines[end:]]  # for lines start..end-1 (one at least)
    assert matches("\n".join(wild), text)


@given(lines=_LINES, data=st.data())
def test_any_changed_line_is_a_mismatch(lines, data):
    index = data.draw(st.integers(0, len(lines) - 1))
    changed = [*lines]
    changed[index] = lines[index] + "x"
    assert not matches("\n".join(lines), "\n".join(changed))


def test_a_page_needing_a_missing_extra_is_skipped_and_only_then(tmp_path, monkeypatch):
    page = _page(tmp_path, "```python\nimport gf_not_installed_zz.sub\n```\n")
    with pytest.raises(ModuleNotFoundError):  # not an extra's module: the page is wrong
        run_page(page)
    monkeypatch.setitem(EXTRAS, "gf_not_installed_zz", "web")
    with pytest.raises(pytest.skip.Exception, match=r"pip install 'genflow\[web\]'"):
        run_page(page)
    monkeypatch.setitem(EXTRAS, "json", "web")  # installed: a missing submodule is a mistake
    with pytest.raises(ModuleNotFoundError):
        run_page(_page(tmp_path, "```python\nimport json.not_a_module_zz\n```\n"))
