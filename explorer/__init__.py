"""OUT/explorer.html: one self-contained interactive page per output folder, to study the runs
in it (the PDF report stays what is handed in).

The page opens offline from disk: plotly.js is inlined from plotly's Python package, and the data
(the run folders' JSON files and each explorer.npz, what the analysis wrote for it beside them;
never the logits) sits in the page as JSON. Its views: predictions per class, the confusion
matrix, one class across the runs (with its concept gap and Algorithm 1's verdict where the run
keeps CLIP's features), the runs against clip, pseudo-label selection, and the images of a class
or a confusion cell where the image folder is readable.

    starter.py --explore [--thumbnails N]   # also written by --report and --demo

This module stays light (starter reads DEFAULT_THUMBNAILS for its --help); plotly is imported
only when a page is written.
"""
from pathlib import Path

DEFAULT_THUMBNAILS = 3  # images per confusion cell, the most confident first
EXPLORER_FILE = "explorer.html"


def write_explorer(out_dir, commands, thumbnails=DEFAULT_THUMBNAILS):
    """Write OUT/explorer.html from the runs in OUT, with at most `thumbnails` images per
    confusion cell; return its path. `commands` (cli.commands.Commands) for its warnings."""
    from explorer.contents import explorer_contents
    from explorer.page import render_page
    from runs.outputs import write_atomic
    page = render_page(explorer_contents(out_dir, thumbnails, commands)).encode("utf-8")
    path = Path(out_dir) / EXPLORER_FILE
    write_atomic(path, lambda file: file.write(page))
    return path
