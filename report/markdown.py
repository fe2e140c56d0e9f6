"""report.md: the Sections as Markdown, headings, tables and figure links."""
from .content import Image, Table


def markdown_cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(table):
    lines = [f"**{table.caption}**", ""] if table.caption else []
    lines.append("| " + " | ".join(markdown_cell(c) for c in table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in table.rows]
    if table.footer:
        lines += ["", "  \n".join(f"*{line}*" for line in table.footer.split("\n"))]
    return "\n".join(lines)


def render_markdown(sections):
    """Headings, tables and figure links (paths relative to OUT, where report.md lives)."""
    parts = []
    for index, section in enumerate(sections):
        heading = "#" if index == 0 else "##"
        parts.append(f"{heading} {section.title}" + (f": {section.subtitle}" if section.subtitle else ""))
        for block in section.blocks:
            if isinstance(block, Table):
                parts.append(markdown_table(block))
            elif isinstance(block, Image):
                parts.append(f"![{block.caption}]({block.path})\n\n*{block.caption}* (`{block.path}`)")
            elif block.style == "subheading":
                parts.append(f"### {block.text}")
            elif block.style == "bullet":
                parts.append(f"- {block.text}")
            elif block.style == "note":
                parts.append(f"*{block.text}*")
            else:
                parts.append(block.text)
    return "\n\n".join(parts) + "\n"
