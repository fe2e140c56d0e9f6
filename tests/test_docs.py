"""The README and docs/: short enough to read in one pass, with a table of contents, and every
relative link, module and package they name existing in the project."""
import re
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
README = PROJECT_DIR / "README.md"
DOCUMENTS = [README, *sorted((PROJECT_DIR / "docs").glob("*.md"))]
# Packages the README's layout names that another branch adds; checked once they are here.
PENDING_PACKAGES = {"study"}
FILE_SUFFIXES = {"html", "npz", "csv", "json", "png", "pdf", "md", "txt", "tsv", "zip"}  # not modules


def slug(heading):
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    return {slug(line.lstrip("#")) for line in path.read_text().split("\n")
            if re.match(r"^#{1,6} ", line)}


def project_files():
    return [path for path in PROJECT_DIR.rglob("*")
            if path.is_file() and not {".git", "figures", "__pycache__"} & set(path.parts)]


def test_readme_is_short_and_opens_with_a_table_of_contents():
    lines = README.read_text().split("\n")
    assert len(lines) <= 300
    headings = [line[3:] for line in lines if line.startswith("## ")]
    assert headings[0] == "Contents"
    contents = "\n".join(lines[lines.index("## Contents"):lines.index(f"## {headings[1]}")])
    for heading in headings[1:]:
        assert f"(#{slug(heading)})" in contents, heading
    for document in DOCUMENTS[1:]:
        assert f"(docs/{document.name})" in contents, document.name


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_relative_links_resolve(document):
    for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        assert linked.exists(), f"{document.name}: {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{document.name}: {target}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_named_modules_and_packages_exist(document):
    text = document.read_text()
    names = {path.name for path in project_files()}
    packages = {path.name for path in PROJECT_DIR.iterdir() if (path / "__init__.py").is_file()}
    for token in re.findall(r"`([^`\s]+)`", text):
        if token.endswith(".py"):  # a module, by path or by file name
            assert (PROJECT_DIR / token).is_file() if "/" in token else token in names, \
                f"{document.name}: {token}"
        elif (re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", token) and token.split(".")[0] in packages
              and token.rsplit(".", 1)[1] not in FILE_SUFFIXES):
            package, module = token.split(".")[:2]  # runs.outputs.UserError
            assert (PROJECT_DIR / package / f"{module}.py").is_file(), f"{document.name}: {token}"
    layout = text.split("## Layout", 1)[1] if "## Layout" in text else ""
    for package in re.findall(r"^- `(\w+)/`", layout, flags=re.MULTILINE):
        assert (PROJECT_DIR / package).is_dir() or package in PENDING_PACKAGES, package
