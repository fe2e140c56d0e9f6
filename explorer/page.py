"""The page itself: explorer.html's skeleton with its style, its data, plotly.js and the glue
script inlined, so that it opens from disk with no server and no network.

The data sits in a <script type="application/json"> element with `<`, `>` and `&` written as
JSON's \\u escapes, so no string in it (a class named `</script><script>...`) can close the
element or be read as HTML; the glue script reads it with JSON.parse.
"""
import html
import json
from pathlib import Path
from string import Template

from plotly.offline import get_plotlyjs

HERE = Path(__file__).resolve().parent
JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def embedded_json(data):
    """`data` as JSON that is safe inside an HTML <script> element."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.translate(str.maketrans(JSON_ESCAPES))


def render_page(contents):
    """The whole HTML page for the explorer's contents."""
    title = f"Pseudo-label explorer: {contents['out']}"
    return Template((HERE / "page.html").read_text()).substitute(
        title=html.escape(("SIMULATED " if contents["simulated"] else "") + title),
        style=(HERE / "explorer.css").read_text(), data=embedded_json(contents),
        plotly=get_plotlyjs(), script=(HERE / "explorer.js").read_text())
