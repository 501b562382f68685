"""MkDocs hook: render `<!-- diagram: workflow-name -->` markers as diagrams.

The page's Python blocks are executed first (as the test suite does; what they
print is the page's ```output blocks, so it is swallowed here), so the workflow
classes they define are registered; each marker becomes the diagram
`genflow.render` draws for a default instance of that workflow. Diagrams in
the docs therefore always match the code above them.

With Graphviz's `dot` installed (CI installs it) a diagram is inline SVG, so it
shows in the built site with no script and no network. Without `dot` it is
the outline `genflow.render.outline_html` draws: plain HTML,
readable as it is, where Mermaid source would show as raw text in a site that
loads no Mermaid script. Either way the Mermaid source follows, folded, to copy.
"""

from __future__ import annotations

import contextlib
import html
import io
import os
import re
import tempfile
from typing import Any

MARKER = re.compile(r"<!-- diagram: ([\w\-. ]+) -->")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
#: the outline's look where the report's stylesheet is not loaded
OUTLINE_STYLE = "font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.85em"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if not MARKER.search(markdown):
        return markdown
    from genflow.registry import workflow_class

    run_blocks(markdown, page.file.src_path, f"docs_{page.file.name}")
    return MARKER.sub(lambda m: diagram_html(workflow_class(m.group(1).strip())()), markdown)


def run_blocks(markdown: str, filename: str, module: str) -> dict[str, Any]:
    """Run the page's Python blocks in one namespace, in a scratch directory, quietly."""
    namespace: dict[str, Any] = {"__name__": module}
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        os.chdir(tmp)
        try:
            for block in BLOCK.findall(markdown):
                # dont_inherit: not this file's `from __future__ import annotations`
                # (string annotations would not resolve in the page's namespace)
                exec(compile(block, filename, "exec", dont_inherit=True), namespace)
        finally:
            os.chdir(cwd)
    return namespace


def diagram_html(wf: Any) -> str:
    """One raw HTML block for Markdown (no blank line inside): SVG drawn by `dot`, or
    the outline without it; the Mermaid source folded under it."""
    from genflow.render import DotNotFoundError, build_graph, outline_html, to_mermaid, to_svg

    source = html.escape(to_mermaid(wf).rstrip("\n"))  # no blank line before </pre>
    try:
        drawn = to_svg(wf)
        kind = "svg"
    except DotNotFoundError:  # (a `dot` that fails is a bug to see, not to hide)
        drawn = (f'<div style="{OUTLINE_STYLE}">{outline_html(build_graph(wf))}</div>'
                 "<p><em>Drawn as an outline: Graphviz's <code>dot</code> was not installed "
                 "when this site was built.</em></p>")
        kind = "outline"
    drawn = "\n".join(line for line in drawn.splitlines() if line.strip())
    return (f'<div class="genflow-diagram genflow-diagram-{kind}" style="overflow-x: auto">\n'
            f'{drawn}\n<details><summary>Mermaid source</summary>'
            f'<pre class="mermaid-source">\n{source}\n</pre></details>\n</div>')


def on_post_build(config: Any, **_: Any) -> None:
    """Screenshots of the console for console.md, taken from the code that built
    the site (docs/scripts/console_screenshots.py). Without Chromium, selenium or
    the web extra the pictures are left out, and the page says how to get them."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        print("docs: no chromium/chromedriver: the console's screenshots are left out",
              file=sys.stderr)
        return
    script = Path(config["docs_dir"]) / "scripts" / "console_screenshots.py"
    done = subprocess.run([sys.executable, str(script), str(Path(config["site_dir"]) / "img")],
                          capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        print(f"docs: the console's screenshots failed: {done.stderr[-1500:]}", file=sys.stderr)
