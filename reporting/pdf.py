"""A signed report as a PDF for people (the referring physician, the patient's record).

Pure: takes plain facts, returns the document's bytes (reportlab's platypus lays it
out); no Django, no database.  Everything printed comes from the facts, escaped,
so a report's text can never inject markup into the layout.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from collections.abc import Sequence
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from reportlab.platypus.flowables import Flowable


@dataclasses.dataclass(frozen=True)
class PdfSection:
    title: str
    rows: Sequence[tuple[str, str]]  # (label, value as words); empty fields left out


@dataclasses.dataclass(frozen=True)
class PdfCommunication:
    communicated_at: dt.datetime
    recipient: str
    role: str
    method: str
    read_back_confirmed: bool
    recorded_by: str


@dataclasses.dataclass(frozen=True)
class PdfAddendum:
    number: int
    text: str
    signed_by: str
    signed_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class PdfFacts:
    report_id: int
    reading_group: str
    facility: str
    # None: the reader of this copy may not see who the patient is.
    patient: Sequence[tuple[str, str]] | None
    study: Sequence[tuple[str, str]]
    template: str
    sections: Sequence[PdfSection]
    impression: str
    severity: str  # "" when the finding is not actionable
    communications: Sequence[PdfCommunication]
    signed_by: str
    signed_at: dt.datetime
    preliminary: tuple[str, dt.datetime] | None
    addenda: Sequence[PdfAddendum]
    generated_at: dt.datetime


def _when(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _text(value: str) -> str:
    """Report text as paragraph markup: escaped, line breaks kept."""
    return escape(value).replace("\n", "<br/>")


def _pairs(rows: Sequence[tuple[str, str]], styles: dict[str, ParagraphStyle]) -> Table:
    data = [
        [Paragraph(_text(label), styles["label"]), Paragraph(_text(value), styles["body"])]
        for label, value in rows
    ]
    table = Table(data, colWidths=[45 * mm, None], hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
                ("TOPPADDING", (0, 0), (-1, -1), 1),
            ]
        )
    )
    return table


def _styles() -> dict[str, ParagraphStyle]:
    base = getSampleStyleSheet()
    return {
        "title": ParagraphStyle("title", parent=base["Title"], fontSize=16, spaceAfter=2),
        "subtitle": ParagraphStyle("subtitle", parent=base["Normal"], alignment=1, fontSize=9),
        "h2": ParagraphStyle("h2", parent=base["Heading2"], fontSize=12, spaceBefore=8),
        "h3": ParagraphStyle("h3", parent=base["Heading3"], fontSize=10.5, spaceBefore=4),
        "body": ParagraphStyle("body", parent=base["BodyText"], fontSize=10, leading=13),
        "label": ParagraphStyle(
            "label", parent=base["BodyText"], fontSize=10, leading=13, textColor=colors.grey
        ),
        "impression": ParagraphStyle(
            "impression",
            parent=base["BodyText"],
            fontSize=11,
            leading=14,
            fontName="Helvetica-Bold",
        ),
        "alert": ParagraphStyle(
            "alert", parent=base["BodyText"], fontSize=10, textColor=colors.HexColor("#b00020")
        ),
    }


def _story(facts: PdfFacts, styles: dict[str, ParagraphStyle]) -> list[Flowable]:
    story: list[Flowable] = [
        Paragraph(_text(facts.facility), styles["title"]),
        Paragraph(
            _text(f"Radiology report · reported by {facts.reading_group}"), styles["subtitle"]
        ),
        Spacer(1, 4 * mm),
        Paragraph("Patient", styles["h2"]),
    ]
    if facts.patient is None:
        story.append(Paragraph("Patient details withheld in this copy.", styles["body"]))
    else:
        story.append(_pairs(facts.patient, styles))
    story += [Paragraph("Study", styles["h2"]), _pairs(facts.study, styles)]
    story.append(Paragraph(_text(f"Report ({facts.template})"), styles["h2"]))
    for section in facts.sections:
        if not section.rows:
            continue
        story += [Paragraph(_text(section.title), styles["h3"]), _pairs(section.rows, styles)]
    story += [
        Paragraph("Impression", styles["h2"]),
        Paragraph(_text(facts.impression), styles["impression"]),
    ]
    if facts.severity:
        story.append(Paragraph(_text(f"Actionable finding: {facts.severity}"), styles["h2"]))
        if not facts.communications:
            story.append(Paragraph("No communication recorded.", styles["alert"]))
        for c in facts.communications:
            read_back = (
                "read-back confirmed" if c.read_back_confirmed else "read-back NOT confirmed"
            )
            line = (
                f"{_when(c.communicated_at)}: {c.recipient} ({c.role}) by {c.method.lower()}, "
                f"{read_back}; recorded by {c.recorded_by}."
            )
            story.append(Paragraph(_text(line), styles["body"]))
    story.append(Paragraph("Signature", styles["h2"]))
    if facts.preliminary is not None:
        name, at = facts.preliminary
        story.append(Paragraph(_text(f"Preliminary report: {name}, {_when(at)}."), styles["body"]))
    story.append(
        Paragraph(
            _text(f"Electronically signed (final) by {facts.signed_by}, {_when(facts.signed_at)}."),
            styles["body"],
        )
    )
    if facts.addenda:
        story.append(Paragraph("Addenda", styles["h2"]))
        for a in facts.addenda:
            story += [
                Paragraph(_text(f"Addendum {a.number}"), styles["h3"]),
                Paragraph(_text(a.text), styles["body"]),
                Paragraph(
                    _text(f"Signed by {a.signed_by}, {_when(a.signed_at)}."), styles["label"]
                ),
            ]
    return story


def report_pdf(facts: PdfFacts, *, compress: bool = True) -> bytes:
    """The report as a PDF document (A4); ``compress=False`` leaves page streams readable."""
    buffer = io.BytesIO()
    footer = f"Report {facts.report_id} · {facts.facility} · generated {_when(facts.generated_at)}"

    def decorate(canvas: Canvas, document: SimpleDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(colors.grey)
        canvas.drawString(document.leftMargin, 10 * mm, footer)
        canvas.drawRightString(
            A4[0] - document.rightMargin, 10 * mm, f"Page {canvas.getPageNumber()}"
        )
        canvas.restoreState()

    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=f"Radiology report {facts.report_id}",
        author=facts.signed_by,
        pageCompression=1 if compress else 0,
    )
    document.build(_story(facts, _styles()), onFirstPage=decorate, onLaterPages=decorate)
    return buffer.getvalue()
