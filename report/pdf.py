"""report.pdf: reportlab platypus on A4 pages. Text and tables flow and split across pages; a
figure wider than a portrait page's frame gets landscape pages; the figures were drawn at the size
they are printed (plotting's page widths), so they are placed unscaled when they fit. A figure
that can be drawn anew (Image.draw) is embedded as vector graphics (report.vector_figures), any
other as its PNG."""
import io
import re
from pathlib import Path
from xml.sax.saxutils import escape

from matplotlib import get_data_path
from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.fonts import addMapping
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import inch
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (BaseDocTemplate, Frame, PageBreak,
                                PageBreakIfNotEmpty, PageTemplate, Paragraph, TableStyle)
from reportlab.platypus import Image as PdfImage
from reportlab.platypus import Table as PdfTable
from reportlab.platypus.doctemplate import ActionFlowable

import plotting
from runs.outputs import FIGURE_DPI

from .content import Image, Table
from .vector_figures import FigureBox, stamp_figures


PORTRAIT, LANDSCAPE = "portrait", "landscape"


VERTICAL_MARGIN = 0.5  # inches above and below the frame: the running header and the footer


IMAGE_HEADROOM = 0.8  # inches of a frame kept for a section heading and a caption above a figure


TABLE_FONT_SIZE = {False: 7.5, True: 7.0}  # by Table.compact


COMPACT_COLUMN_INCHES = 1.2  # compact tables wrap longer cells, so that they sit side by side


TABLE_GAP = 10  # points between side-by-side tables


CELL_PADDING = 3  # points
FIT_SLACK = 12  # points a page sharing a fitted figure keeps spare, for spacing not measured
SMALLEST_TITLE_SIZE = 8.5  # points: a name of 40 characters keeps page 1's details on one line


FONT = "DejaVuSans"  # ships with matplotlib; has λ, τ, −, ≈, p̂ and the arrows, unlike Helvetica


def register_fonts():
    directory = Path(get_data_path()) / "fonts" / "ttf"
    for face, bold, italic in ((FONT, 0, 0), (f"{FONT}-Bold", 1, 0), (f"{FONT}-Oblique", 0, 1),
                               (f"{FONT}-BoldOblique", 1, 1), (f"{FONT}Mono", None, None)):
        if face not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont(face, str(directory / f"{face}.ttf")))
        if bold is not None:
            addMapping(FONT, bold, italic, face)


def paragraph_styles():
    body = ParagraphStyle("body", fontName=FONT, fontSize=9, leading=11.5, spaceAfter=5)
    bold = f"{FONT}-Bold"
    return {
        "body": body,
        "note": ParagraphStyle("note", body, fontName=f"{FONT}-Oblique", fontSize=8, leading=10,
                               textColor=colors.HexColor("#404040")),
        "small": ParagraphStyle("small", body, fontSize=8, leading=10, spaceAfter=3),
        "bullet": ParagraphStyle("bullet", body, leftIndent=12, bulletIndent=3, spaceAfter=2),
        "subheading": ParagraphStyle("subheading", body, fontName=bold, fontSize=9.5, leading=12,
                                     spaceBefore=3, keepWithNext=1),
        "caption": ParagraphStyle("caption", body, fontName=bold, fontSize=8.5, leading=10.5,
                                  spaceAfter=3, keepWithNext=1),
        "footer": ParagraphStyle("footer", body, fontSize=6.5, leading=8, spaceBefore=2,
                                 spaceAfter=TABLE_GAP),
        "section": ParagraphStyle("section", body, fontName=bold, fontSize=13, leading=16,
                                  spaceAfter=6, keepWithNext=1),
        "title": ParagraphStyle("title", body, fontName=bold, fontSize=10.5, leading=13,
                                spaceAfter=8, keepWithNext=1),
    }


def markup(text, emphasis=False):
    """Text as reportlab paragraph markup: escaped, `code` in the monospaced font, and with
    `emphasis` (the student's Markdown) **bold** and *italic*."""
    text = re.sub(r"`([^`]+)`", rf'<font face="{FONT}Mono">\1</font>', escape(str(text)))
    if emphasis:
        text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
        text = re.sub(r"(?<![\w*])[*_](?![\s*])(.+?)(?<![\s*])[*_](?![\w*])", r"<i>\1</i>", text)
    return text


def text_flowable(block, styles):
    """A Text block as a Paragraph; a bullet item with its bullet."""
    return Paragraph(markup(block.text, block.emphasis), styles[block.style],
                     bulletText="•" if block.style == "bullet" else None)


def page_geometry(orientation):
    """(page size, frame width, frame height) in points."""
    size = A4 if orientation == PORTRAIT else landscape(A4)
    width = (plotting.PORTRAIT_WIDTH if orientation == PORTRAIT else plotting.LANDSCAPE_WIDTH) * inch
    return size, width, size[1] - 2 * VERTICAL_MARGIN * inch


def footer_markup(footer):
    return "<br/>".join(markup(line) for line in footer.split("\n"))


def table_flowable(table, styles, max_width):
    """A reportlab Table as wide as its contents, at most max_width: a column too wide for
    that (or, in a compact table, wider than COMPACT_COLUMN_INCHES) wraps its cells."""
    size = TABLE_FONT_SIZE[table.compact]
    rows = [[str(cell) for cell in table.columns], *[[str(cell) for cell in row] for row in table.rows]]
    widths = [max(pdfmetrics.stringWidth(cell, f"{FONT}-Bold" if r == 0 else FONT, size)
                  for r, cell in enumerate(column)) + 2 * CELL_PADDING for column in zip(*rows)]
    natural = list(widths)
    cap = COMPACT_COLUMN_INCHES * inch if table.compact else max_width
    # Too wide: columns narrower than their share keep their width, the others share the rest.
    remaining = max_width
    for index, width in enumerate(sorted(widths)):
        if width > remaining / (len(widths) - index):
            cap = min(cap, remaining / (len(widths) - index))
            break
        remaining -= width
    widths = [min(width, cap) for width in widths]
    cell_style = ParagraphStyle("cell", styles["body"], fontSize=size, leading=size * 1.2, spaceAfter=0)
    wrapped = [column for column, (width, wanted) in enumerate(zip(widths, natural)) if wanted > width]
    for r, row in enumerate(rows):
        for column in wrapped:
            row[column] = Paragraph(f"<b>{escape(row[column])}</b>" if r == 0 else escape(row[column]),
                                    cell_style)
    flowable = PdfTable(rows, colWidths=widths, repeatRows=1, hAlign="LEFT")
    flowable.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, -1), FONT, size, size * 1.2),
        ("FONT", (0, 0), (-1, 0), f"{FONT}-Bold", size, size * 1.2),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#E8E8E8")),
        ("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#999999")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PADDING),
        ("TOPPADDING", (0, 0), (-1, -1), 1),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]))
    return flowable, sum(widths)


def table_flowables(tables, styles, frame_width):
    """Flowables of consecutive tables: each under its caption with its footer below; compact
    ones side by side as many as fit the frame's width."""
    built = [(table, *table_flowable(table, styles, frame_width)) for table in tables]
    if not all(table.compact for table in tables):
        flowables = []
        for table, flowable, _ in built:
            if table.caption:
                flowables.append(Paragraph(markup(table.caption), styles["caption"]))
            flowables.append(flowable)
            if table.footer:
                flowables.append(Paragraph(footer_markup(table.footer), styles["footer"]))
            else:
                flowable.spaceAfter = TABLE_GAP
        return flowables
    rows, row, used = [], [], 0.0
    for table, flowable, width in built:
        if row and used + TABLE_GAP + width > frame_width:
            rows.append(row)
            row, used = [], 0.0
        row.append((table, flowable, width))
        used += width + (TABLE_GAP if len(row) > 1 else 0)
    rows.append(row)
    flowables = []
    for row in rows:
        cells = [[Paragraph(markup(table.caption), styles["caption"]), flowable]
                 + ([Paragraph(footer_markup(table.footer), styles["footer"])] if table.footer else [])
                 for table, flowable, _ in row]
        # The row's spare width is shared out, so that captions wrap less.
        spare = (frame_width - sum(width + TABLE_GAP for _, _, width in row)) / len(row)
        outer = PdfTable([cells], colWidths=[width + TABLE_GAP + max(spare, 0) for _, _, width in row],
                         hAlign="LEFT", spaceAfter=TABLE_GAP,
                         style=[("VALIGN", (0, 0), (-1, -1), "TOP"),
                                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                                ("RIGHTPADDING", (0, 0), (-1, -1), TABLE_GAP),
                                ("TOPPADDING", (0, 0), (-1, -1), 0)])
        flowables.append(outer)  # one row: never split, moved whole to the next page
    return flowables


def drawn_size(block, out_dir):
    """(width, height) in points of a figure at the size it was drawn."""
    with PILImage.open(Path(out_dir) / block.path) as image:
        return tuple(pixels / FIGURE_DPI * inch for pixels in image.size)


def printed_scale(size, frame_width, frame_height):
    """How much a figure of `size` is shrunk to fit a frame under its heading (at most 1)."""
    width, height = size
    return min(1.0, frame_width / width, (frame_height - IMAGE_HEADROOM * inch) / height)


def image_flowables(block, out_dir, styles, frame_width, frame_height, placements):
    """Caption, then the figure at its drawn size, shrunk only where the frame is smaller: drawn
    anew as vector graphics (its place recorded in `placements`) when it can be, else its PNG."""
    width, height = drawn_size(block, out_dir)
    scale = printed_scale((width, height), frame_width, frame_height)
    caption = Paragraph(markup(f"{block.caption}  ({block.path})"), styles["caption"])
    if block.draw is not None:
        return [caption, FigureBox(block.draw, width * scale, height * scale, placements)]
    return [caption, PdfImage(str(Path(out_dir) / block.path), width * scale, height * scale,
                              hAlign="LEFT")]


def image_orientation(block, out_dir):
    """The page orientation that prints a figure larger; None (either) when both print it whole."""
    size = drawn_size(block, out_dir)
    portrait, landscape = (printed_scale(size, *page_geometry(orientation)[1:])
                           for orientation in (PORTRAIT, LANDSCAPE))
    if min(portrait, landscape) > 0.99:
        return None
    return LANDSCAPE if landscape > portrait else PORTRAIT


def block_groups(blocks):
    """Blocks with consecutive tables grouped (compact ones may share a row)."""
    groups = []
    for block in blocks:
        if isinstance(block, Table) and groups and isinstance(groups[-1], list):
            groups[-1].append(block)
        else:
            groups.append([block] if isinstance(block, Table) else block)
    return groups


def fitted_style(style, text, width):
    """`style` shrunk in half points, down to SMALLEST_TITLE_SIZE, until `text` fits one line of
    `width` (page 1's line of the student's details); beyond, it wraps."""
    size = style.fontSize
    while size > SMALLEST_TITLE_SIZE and pdfmetrics.stringWidth(text, style.fontName, size) > width:
        size -= 0.5
    return ParagraphStyle(f"{style.name}-fitted", style, fontSize=size, leading=size * style.leading / style.fontSize)


def pdf_story(sections, out_dir, styles, placements):
    """The flowables of the whole report, with page breaks and page templates switched where
    a figure needs another orientation or a page of its own; the vector figures record where
    they land in `placements`."""
    story, orientation, fitted = [], PORTRAIT, []
    for index, section in enumerate(sections):
        text = section.title + (f": {section.subtitle}" if section.subtitle else "")
        heading = Paragraph(markup(text), fitted_style(styles["title"], text, page_geometry(PORTRAIT)[1])
                            if index == 0 else styles["section"])
        # Read by ReportDocument.afterFlowable; the first section's title is the student's
        # details, not a section to find.
        heading.section_title = section.title if index else None
        if section.new_page:
            story.append(PageBreakIfNotEmpty(PORTRAIT))
            orientation = PORTRAIT
        pending = [heading]  # placed with the first block, after any page break it needs
        for group in block_groups(section.blocks):
            if isinstance(group, Image):
                wanted = (group.orientation or image_orientation(group, out_dir)
                          or (PORTRAIT if group.own_page else orientation))
                if wanted != orientation or group.own_page:
                    story.append(PageBreakIfNotEmpty(wanted))
                    orientation = wanted
            _, frame_width, frame_height = page_geometry(orientation)
            story += pending
            pending = []
            if isinstance(group, Image):
                story += image_flowables(group, out_dir, styles, frame_width, frame_height,
                                         placements)
                if group.fit_page:
                    fitted.append((story[-1], frame_width, frame_height))
                if group.own_page:
                    story.append(PageBreakIfNotEmpty(orientation))
            elif isinstance(group, list):
                story += table_flowables(group, styles, frame_width)
            else:
                story.append(text_flowable(group, styles))
        story += pending
    for image, frame_width, frame_height in fitted:
        fit_to_page(image, story, frame_width, frame_height)
    return story


def fit_to_page(image, story, frame_width, frame_height):
    """Fit a figure to share its page with everything from the page break before it to the page
    break after it (the story must start that page with a break): a vector figure drawn anew for
    the room left, a PNG shrunk."""
    position = story.index(image)
    breaks = [index for index, flowable in enumerate(story) if isinstance(flowable, PageBreak)]
    start = max([index for index in breaks if index < position], default=-1) + 1
    end = min([index for index in breaks if index > position], default=len(story))
    others = sum(flowable.wrap(frame_width, frame_height)[1] + flowable.getSpaceBefore()
                 + flowable.getSpaceAfter() for flowable in story[start:end] if flowable is not image)
    room = frame_height - others - FIT_SLACK
    if isinstance(image, FigureBox):  # laid out anew to the room: its text keeps its size
        image.fit(frame_width, room)
        return
    scale = min(1.0, room / image.drawHeight)
    image.drawWidth, image.drawHeight = image.drawWidth * scale, image.drawHeight * scale


class ReportDocument(BaseDocTemplate):
    """A4 pages, portrait and landscape, whose running header names the sections they show (after
    the `warning`, in red, on every page when there is one) and whose footer numbers them."""

    def __init__(self, file, first_section, footer, warning, **options):
        self.current_section, self.page_sections = first_section, []
        self.footer, self.warning = footer, warning
        templates = []
        for orientation in (PORTRAIT, LANDSCAPE):
            size, frame_width, frame_height = page_geometry(orientation)
            frame = Frame((size[0] - frame_width) / 2, VERTICAL_MARGIN * inch, frame_width,
                          frame_height, leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)
            templates.append(PageTemplate(orientation, [frame], onPageEnd=self.finish_page,
                                          pagesize=size))
        super().__init__(file, pageTemplates=templates, **options)

    def afterFlowable(self, flowable):
        if isinstance(flowable, (ActionFlowable, PageBreak)):  # layout actions, not content
            return
        title = getattr(flowable, "section_title", None)
        if not self.page_sections and not title and self.current_section:  # goes on with the section before
            self.page_sections.append(f"{self.current_section} (continued)")
        if title:
            self.current_section = title
            self.page_sections.append(title)

    def finish_page(self, canvas, document):
        width, height = canvas._pagesize
        canvas.saveState()
        canvas.setFont(f"{FONT}-Bold", 8)
        if self.warning:
            canvas.setFillColor(colors.HexColor("#B00020"))
        header = (f"{self.warning} · " if self.warning else "") + " · ".join(self.page_sections)
        frame_width = page_geometry(PORTRAIT if width < height else LANDSCAPE)[1]
        canvas.drawString((width - frame_width) / 2, height - 0.32 * inch, header)
        canvas.setFillColor(colors.HexColor("#666666"))
        canvas.setFont(FONT, 7)
        canvas.drawCentredString(width / 2, 0.25 * inch, f"{self.footer}   page {canvas.getPageNumber()}")
        canvas.restoreState()
        self.page_sections = []


def render_pdf(sections, out_dir, file, title, footer, warning=None):
    """Write the sections as a PDF to the binary `file`: laid out by reportlab, then the vector
    figures stamped into their boxes; `warning` (what is not real in it, say) heads every page in
    red."""
    register_fonts()
    built, placements = io.BytesIO(), []
    document = ReportDocument(built, None, footer, warning, title=title,
                              author="starter.py --report")
    document.build(pdf_story(sections, out_dir, paragraph_styles(), placements))
    stamp_figures(built.getvalue(), placements, file)
