"""MkDocs hook: render `<!-- diagram: workflow-name -->` markers as diagrams.

The page's Python blocks are executed first (as the test suite does), so the
workflow classes they define are registered; each marker becomes the diagram
`genflow.render` draws for a default instance of that workflow. Diagrams in
the docs therefore always match the code above them.

With Graphviz's `dot` installed (CI installs it) a diagram is inline SVG, so it
shows in the built site with no script and no network; its Mermaid source
follows, folded. Without `dot` the marker becomes the Mermaid source in a
`<pre class="mermaid">`, for a site that loads Mermaid's script.
"""

from __future__ import annotations

import html
import re
from typing import Any

MARKER = re.compile(r"<!-- diagram: ([\w\-. ]+) -->")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if not MARKER.search(markdown):
        return markdown
    import os
    import tempfile

    from genflow.registry import workflow_class
    from genflow.render import DotNotFoundError, to_mermaid, to_svg

    namespace: dict[str, Any] = {"__name__": f"docs_{page.file.name}"}
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            for block in BLOCK.findall(markdown):
                # dont_inherit: not this file's `from __future__ import annotations`
                # (string annotations would not resolve in the page's namespace)
                exec(compile(block, page.file.src_path, "exec", dont_inherit=True), namespace)
        finally:
            os.chdir(cwd)

    def diagram(match: re.Match[str]) -> str:
        wf = workflow_class(match.group(1).strip())()
        source = html.escape(to_mermaid(wf))
        try:
            svg = to_svg(wf)
        except DotNotFoundError:
            return f'<pre class="mermaid">\n{source}\n</pre>'
        # one raw HTML block for Markdown: no blank line inside it
        svg = "\n".join(line for line in svg.splitlines() if line.strip())
        return (f'<div class="genflow-diagram" style="overflow-x: auto">\n{svg}\n'
                f'<details><summary>Mermaid source</summary>'
                f'<pre class="mermaid-source">\n{source}\n</pre></details>\n</div>')

    return MARKER.sub(diagram, markdown)


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
