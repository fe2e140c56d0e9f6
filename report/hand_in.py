"""What the student hands in with the report: name, student ID, date of submission and notes on
what may be wrong. Remembered in OUT/hand-in.json, so that a later report without them keeps
them; given anew, they replace the remembered ones."""
import re
import sys
from dataclasses import dataclass
from datetime import date as Date
from pathlib import Path

from runs.outputs import UserError, read_json, write_json

from .content import Text

HAND_IN_FILE = "hand-in.json"
NOTES_HEADING = "What might be wrong, and how it affected the results"  # the spec's section 5
OPTIONS = {"name": "--name", "student_id": "--student-id", "date": "--date", "notes": "--notes"}
BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


@dataclass
class HandIn:
    name: str = None
    student_id: str = None
    date: Date = None  # the date of submission; None: today
    notes: str = None  # the notes file's text (plain text or Markdown)

    @property
    def submission_date(self):
        return self.date or Date.today()


def read_notes(path):
    """The notes file's text; a missing or non-UTF-8 file is a UserError naming the fix."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"the notes file {path} does not exist: pass --notes with the path of "
                        "your plain-text or Markdown file.") from None
    except UnicodeDecodeError:
        raise UserError(f"the notes file {path} is not UTF-8 text: save it as UTF-8 (or plain "
                        "text) and pass --notes again.") from None
    except OSError as error:
        raise UserError(f"the notes file {path} cannot be read ({error.strerror or error}): "
                        "pass --notes with a readable file.") from None


def given(value):
    """None for a detail not given this time ("" included: starter's default for --name)."""
    return None if value in (None, "") else value


def resolve_hand_in(out_dir, name=None, student_id=None, date=None, notes=None):
    """The details given now, the others from OUT/hand-in.json; writes the result back and says
    on stderr, in one line, which were kept."""
    path = Path(out_dir) / HAND_IN_FILE
    remembered = read_json(path, "the remembered hand-in details") if path.is_file() else {}
    now = {"name": given(name), "student_id": given(student_id),
           "date": date.isoformat() if given(date) else None,
           "notes": read_notes(notes) if given(notes) else None}
    kept = [key for key, value in now.items() if value is None and remembered.get(key) is not None]
    details = {key: now[key] if now[key] is not None else remembered.get(key) for key in now}
    if kept:
        described = [f'name "{details["name"]}"' if key == "name" else
                     f"student ID {details['student_id']}" if key == "student_id" else
                     f"date {details['date']}" if key == "date" else "notes" for key in kept]
        print(f"note: kept {join_words(described)} from {path}; pass "
              f"{'/'.join(OPTIONS[key] for key in kept)} to change "
              f"{'it' if len(kept) == 1 else 'them'}", file=sys.stderr)
    if any(value is not None for value in details.values()):
        write_json(path, {key: value for key, value in details.items() if value is not None})
    return HandIn(details["name"], details["student_id"],
                  Date.fromisoformat(details["date"]) if details["date"] else None, details["notes"])


def join_words(words):
    """"a", "a and b", "a, b and c"."""
    return " and ".join(filter(None, [", ".join(words[:-1]), words[-1]]))


def notes_blocks(text):
    """The notes as blocks: Markdown headings, bullet items and paragraphs (blank-line
    separated); plain text reads as paragraphs. **bold** and *italic* are rendered."""
    blocks, paragraph = [], []

    def close_paragraph():
        if paragraph:
            blocks.append(Text(" ".join(paragraph), emphasis=True))
            paragraph.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            close_paragraph()
        elif stripped.startswith("#"):
            close_paragraph()
            blocks.append(Text(stripped.lstrip("#").strip(), "subheading", emphasis=True))
        elif BULLET.match(line):
            close_paragraph()
            blocks.append(Text(BULLET.sub("", line), "bullet", emphasis=True))
        elif blocks and blocks[-1].style == "bullet" and not paragraph and line[:1].isspace():
            blocks[-1].text += " " + stripped  # a bullet's continuation line
        else:
            paragraph.append(stripped)
    close_paragraph()
    return blocks
