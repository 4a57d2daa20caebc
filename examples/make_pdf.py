"""Write examples/documents/printing-press.pdf, the example PDF document.

The PDF is committed; this script only says where it came from. It needs fpdf2, which the
pipeline itself does not: `pip install fpdf2 && python examples/make_pdf.py`. The creation
date is fixed so that running it again gives the same text and metadata.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF

OUTPUT = Path(__file__).parent / "documents" / "printing-press.pdf"
TITLE = "The Printing Press and the Spread of Ideas"
AUTHOR = "docpipe examples"

# The core PDF fonts cover Latin-1 only, so the text sticks to plain ASCII punctuation.
SECTIONS = [
    (
        "Before Gutenberg",
        "For most of history a book was copied by hand, one page at a time. In medieval Europe "
        "the work was done largely by monks in monastery scriptoria and, later, by professional "
        "scribes in university towns. A single Bible could take a scribe more than a year, and "
        "every copy introduced new errors. Printing itself was not new: Chinese printers had "
        "cut whole pages into wooden blocks for centuries, and around 1040 the artisan Bi Sheng "
        "made movable type from baked clay. In Korea, a Buddhist text known as the Jikji was "
        "printed with movable metal type in 1377. These inventions changed East Asian book "
        "production, but thousands of distinct characters made movable type less of an "
        "advantage there than it would prove to be for an alphabet of a few dozen letters.",
    ),
    (
        "The invention in Mainz",
        "Around 1440 Johannes Gutenberg, a goldsmith from Mainz, began to combine several "
        "techniques into a complete printing system. The heart of it was a hand mould that "
        "could cast large numbers of identical letters quickly from an alloy of lead, tin and "
        "antimony, which melted easily and cooled hard. He developed an oil-based ink that "
        "clung to metal type, and adapted the screw press that was already used to press "
        "grapes and olives. A compositor set the letters line by line into a frame, the "
        "pressman inked the type and pulled the impression, and the type could be cleaned and "
        "reused for the next page. By about 1455 Gutenberg's workshop had completed its famous "
        "Bible, of which around 180 copies were printed, some on paper and some on vellum.",
    ),
    (
        "A rapid spread",
        "The new craft spread along trade routes with remarkable speed. Printers trained in "
        "Mainz set up shops in Italy, France and the Low Countries, and by 1500 presses were "
        "working in more than two hundred European towns. Historians estimate that several "
        "million books were printed in those first fifty years, more than the scribes of "
        "Europe had produced in the previous thousand. In Venice, Aldus Manutius published "
        "Greek and Latin classics in small, affordable formats and introduced italic type. "
        "William Caxton brought the press to England in 1476 and printed Chaucer's Canterbury "
        "Tales, helping to standardise English spelling in the process.",
    ),
    (
        "Consequences",
        "Cheap printed texts changed how ideas moved. When Martin Luther wrote his criticisms "
        "of the church in 1517, printed pamphlets carried them across Germany within weeks, "
        "and the Reformation became the first mass movement to be fought in print. Scholars "
        "could compare identical copies of a text, correct errors in new editions and build on "
        "one another's work, which supported the scientific revolution. Printed maps, "
        "calendars, contracts and newspapers followed, and literacy slowly rose as reading "
        "material became common rather than precious.",
    ),
    (
        "Later developments",
        "The basic design of the wooden hand press changed little for three and a half "
        "centuries. In 1814 Friedrich Koenig's steam-powered cylinder press printed The Times "
        "of London far faster than any team of pressmen, and in 1886 Ottmar Mergenthaler's "
        "Linotype machine cast whole lines of type from a keyboard, ending centuries of setting "
        "letters by hand. Offset lithography, phototypesetting and finally digital publishing "
        "followed, yet each still serves the purpose that drove Gutenberg: making many faithful "
        "copies of a text, quickly and cheaply.",
    ),
]


def build() -> FPDF:
    """Lay out the title and the sections on A4 pages."""
    pdf = FPDF(format="A4")
    pdf.set_title(TITLE)
    pdf.set_author(AUTHOR)
    pdf.set_subject("History of printing")
    pdf.set_creation_date(datetime(2025, 1, 15, tzinfo=UTC))
    pdf.set_margins(25, 25)
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=18)
    pdf.multi_cell(0, 10, TITLE, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for heading, body in SECTIONS:
        pdf.set_font("Helvetica", style="B", size=13)
        pdf.multi_cell(0, 8, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, body, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
    return pdf


def main() -> None:
    build().output(str(OUTPUT))
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
