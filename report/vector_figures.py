"""Figures in report.pdf as vector graphics. reportlab cannot place a PDF page, so the layout
leaves a box of the figure's printed size where it goes (FigureBox), which records where it
landed; once the document is built, pypdf stamps each figure, drawn by matplotlib as a one-page
PDF, into its box. Its text is embedded TrueType: class names a grader can search, sharp at any
zoom."""
import io
import re
from dataclasses import dataclass

import matplotlib
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DictionaryObject, FloatObject, NameObject
from reportlab.lib.units import inch
from reportlab.platypus import Flowable


@dataclass
class Placement:
    """A figure's box in the document: the name of the form XObject drawn there."""
    form: str
    figure: object  # the matplotlib Figure
    width: float  # points
    height: float


class FigureBox(Flowable):
    """A figure's box: where reportlab lays it out, it draws an empty form XObject of its printed
    size, and appends its Placement to `placements` for stamp_figures to fill the form with the
    figure. The figure's text thus sits in the page's text where the box is, in reading order.
    draw(size) redraws the figure for another box (figure_sources.figure_drawer)."""

    def __init__(self, draw, width, height, placements):
        super().__init__()
        self.draw_figure, self.placements = draw, placements
        self.take(draw(None), width, height)

    def fit(self, width, height):
        """Draw the figure anew for a box of width x height points."""
        self.take(self.draw_figure((width / inch, height / inch)), width, height)

    def take(self, figure, width, height):
        """Print `figure` at the size it was drawn, shrunk where that exceeds width x height
        points."""
        drawn_width, drawn_height = (inches * inch for inches in figure.get_size_inches())
        scale = min(1.0, width / drawn_width, height / drawn_height)
        self.figure, self.width, self.height = figure, drawn_width * scale, drawn_height * scale

    def wrap(self, available_width, available_height):
        return self.width, self.height

    def draw(self):
        form = f"{FORM_PREFIX}{len(self.placements)}"
        self.canv.beginForm(form, 0, 0, self.width, self.height)
        self.canv.endForm()
        self.canv.doForm(form)
        self.placements.append(Placement(form, self.figure, self.width, self.height))


FORM_PREFIX = "vectorfigure"


def figure_pages(figures):
    """The Figures as the pages of one PDF, their text as TrueType (matplotlib's default, Type 3,
    is drawn glyphs that text extraction cannot read back). One document, so that the font is
    subset and embedded once for all of them, not once a figure (~0.3 s each)."""
    from matplotlib.backends.backend_pdf import PdfPages
    buffer = io.BytesIO()
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(buffer) as pages:
        for figure in figures:
            pages.savefig(figure)
    return PdfReader(buffer).pages if figures else []


def stamp_figures(document_pdf, placements, file):
    """Write the built document (bytes) to the binary `file`, each placement's empty form filled
    with its figure's page, scaled to the box."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(document_pdf)))
    by_form = {placement.form: placement for placement in placements}
    forms = list(placed_forms(writer, by_form))
    for (form, placement), page in zip(forms, figure_pages([placement.figure for _, placement in forms])):
        fill_form(writer, form, placement, page)
    writer.write(file)


def placed_forms(writer, by_form):
    """(form XObject, its Placement) of each figure box in the document, in page order."""
    for page in writer.pages:
        for key, reference in page.get("/Resources", {}).get("/XObject", {}).items():
            placement = by_form.get(key.lstrip("/").removeprefix("FormXob."))
            if placement is not None:
                yield reference.get_object(), placement


def fill_form(writer, form, placement, page):
    """Make the form XObject `form` draw the placement's figure, drawn as the PDF page `page`,
    scaled into its box by the content's own transformation (so that text extraction sees the
    printed font sizes; a form's /Matrix is not applied by every reader)."""
    scale = min(placement.width / float(page.mediabox.width),
                placement.height / float(page.mediabox.height))
    # reportlab wrote the empty form ASCII85- and Flate-encoded; pypdf re-encodes a stream only
    # with Flate: decode it once, then give it the figure's content under Flate alone.
    form.get_data()
    form[NameObject("/Filter")] = NameObject("/FlateDecode")
    content = page.get_contents().get_data()
    form.set_data(f"q {scale:.6f} 0 0 {scale:.6f} 0 0 cm\n".encode() + content + b"\nQ")
    form[NameObject("/BBox")] = ArrayObject([FloatObject(value) for value in
                                             (0, 0, placement.width, placement.height)])
    # The pages of one matplotlib PDF share one resource dictionary, whose /XObject holds every
    # figure's images: each form gets its own copy, with the images its page draws (`/Name Do`).
    resources = DictionaryObject(page["/Resources"].clone(writer))
    drawn = set(re.findall(rb"/([^\s/\[\]()<>{}%]+)\s+Do\b", content))
    xobjects = resources.get("/XObject")
    if xobjects is not None:
        resources[NameObject("/XObject")] = DictionaryObject(
            {key: value for key, value in xobjects.get_object().items() if key[1:].encode() in drawn})
    form[NameObject("/Resources")] = resources
