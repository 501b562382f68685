"""MkDocs hook: render `<!-- diagram: workflow-name -->` markers as Mermaid.

The page's Python blocks are executed first (as the test suite does), so the
workflow classes they define are registered; each marker becomes the diagram
`genflow.render` draws for a default instance of that workflow. Diagrams in
the docs therefore always match the code above them.
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
    from genflow.render import to_mermaid

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
        source = to_mermaid(workflow_class(match.group(1).strip())())
        return f'<pre class="mermaid">\n{html.escape(source)}\n</pre>'

    return MARKER.sub(diagram, markdown)
