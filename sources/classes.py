"""Classes: the data folder's class folders, their names and CLIP's prompt templates.

ImageNet wnid folders get their ImageNet-1k indices and names from the shipped tables; any other
image folder is named by a classnames.txt (CLIP_benchmark's format) or by its folder names.
Reads folders, the shipped class tables and the user's text files only (stdlib), so caches are
checked, and debiaspl runs, without torch, open_clip or timm being needed to name a class.
"""
import codecs
import csv
import functools
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from runs.outputs import UserError

PROJECT_DIR = Path(__file__).resolve().parent.parent
IMAGENET100_TABLE = PROJECT_DIR / "imagenet100.tsv"  # the standard 100 classes
# Every ImageNet-1k class; written by scripts/write_imagenet1k_table.py from open_clip and timm.
IMAGENET1K_TABLE = PROJECT_DIR / "imagenet1k.tsv"
TABLE_COLUMNS = ("wnid", "imagenet1k_index", "clip_name", "wordnet_name", "wordnet_lemmas")
# --class-names: OpenAI's curated names (CLIP's published protocol) or the first WordNet lemma
# (what the course's starter code and many homework solutions use).
CLASS_NAME_COLUMNS = {"openai": "clip_name", "wordnet": "wordnet_name"}
CLASS_NAME_SOURCES = {"openai": "CLIP's curated ImageNet names", "wordnet": "WordNet lemmas"}
# What torchvision's ImageFolder loads (its IMG_EXTENSIONS), kept here so caches are checked
# without importing torch.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


# --split: the dataset root's folders; CLIP_benchmark's exports name their evaluation split test.
SPLITS = ("val", "train", "test")


def resolve_split_dir(data, split=None):
    """(split, folder of class folders): DATA/<split> when it exists, else DATA itself, a split
    folder named directly, whose split is --split, else its own name when that is one (so that
    --data .../train is a train run), else val."""
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UserError(f"the data folder {root} does not exist; pass --data or set "
                        "IMAGENET100_ROOT.")
    present = [name for name in SPLITS if (root / name).is_dir()]
    if present:
        chosen = split or ("test" if present == ["test"] else SPLITS[0])
        if chosen not in present:
            raise UserError(f"{root} has no {chosen} folder (it has {', '.join(present)}); pass "
                            f"--split {present[0]}, or --data pointing to the {chosen} images.")
        return chosen, root / chosen
    return split or (root.name if root.name in SPLITS else SPLITS[0]), root


def find_class_folders(val_dir):
    wnids = sorted(entry.name for entry in os.scandir(val_dir) if entry.is_dir())
    if not wnids:
        raise UserError(f"{val_dir} holds no class folders; --data must point to a dataset's root "
                        "(holding val/ or train/) or to a folder of class folders.")
    return wnids


def file_list_identity(paths):
    """SHA-256 of the dataset's relative file list: tells whether a cache saw the same images."""
    import hashlib
    return hashlib.sha256("\n".join(sorted(paths)).encode()).hexdigest()


def read_table(path):
    with path.open(newline="") as table:
        return list(csv.DictReader(table, delimiter="\t"))


@functools.cache
def imagenet1k_table():
    """{wnid: row} of the 1,000 ImageNet-1k classes, in class-index order."""
    return {row["wnid"]: row for row in read_table(IMAGENET1K_TABLE)}


def imagenet1k_wnids():
    """The 1,000 ImageNet-1k wnids in class-index order."""
    return list(imagenet1k_table())


def read_imagenet100_table():
    return read_table(IMAGENET100_TABLE)


def not_imagenet1k(unknown):
    return (f"class folder {unknown[0]!r} is not an ImageNet-1k wnid"
            + (f" (nor are {len(unknown) - 1} others)" if len(unknown) > 1 else ""))


def describe_classes(wnids, class_names="openai"):
    """(ImageNet-1k indices, class names) of the folder's wnids; `class_names` picks the names
    (a key of CLASS_NAME_COLUMNS)."""
    table = imagenet1k_table()
    unknown = [wnid for wnid in wnids if wnid not in table]
    if unknown:
        raise UserError(not_imagenet1k(unknown)
                        + "; the data folder must hold one folder per ImageNet class.")
    column = CLASS_NAME_COLUMNS[class_names]
    return ([int(table[wnid]["imagenet1k_index"]) for wnid in wnids],
            [table[wnid][column] for wnid in wnids])


def are_imagenet1k_wnids(folders):
    table = imagenet1k_table()
    return all(folder in table for folder in folders)


def standard_imagenet_name(wnids):
    """"ImageNet100" or "ImageNet-1k" when the wnids are exactly that class set, else None."""
    if set(wnids) == {row["wnid"] for row in read_imagenet100_table()}:
        return "ImageNet100"
    if set(wnids) == set(imagenet1k_table()):
        return "ImageNet-1k"
    return None


def subset_warning(wnids):
    """The warning for ImageNet wnid folders that are neither the standard ImageNet100 nor all of
    ImageNet-1k (a subset: results are not comparable to published ones), else None; folders of
    any other dataset get none, since their classes are the dataset's own."""
    if not are_imagenet1k_wnids(wnids) or standard_imagenet_name(wnids):
        return None
    standard = {row["wnid"] for row in read_imagenet100_table()}
    missing, extra = sorted(standard - set(wnids)), sorted(set(wnids) - standard)
    return (f"the folder's {len(wnids)} classes are not the standard ImageNet100: {len(missing)} "
            f"of its classes are missing and {len(extra)} others are present; results are for the "
            "folder's classes.")


def warn_if_not_imagenet100(wnids):
    warning = subset_warning(wnids)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)


# CLIP_benchmark's dataset files (its `clip_benchmark_export_wds` writes them beside the splits):
# one class name per line, in class-index order (ImageFolder's: sorted folder names), and one
# prompt template per line, `{c}` standing for the class name.
CLASS_NAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"
CLASS_PLACEHOLDER = "{c}"
SINGLE_TEMPLATE = "a photo of a {c}."
OPENAI_TEMPLATES_SOURCE = "OpenAI's 80 ImageNet templates"
FOLDER_NAMES_SOURCE = "the folder names"
WNID_PATTERN = re.compile(r"n\d{8}")  # WordNet's noun ids, as ImageNet names its class folders


@dataclass(frozen=True)
class DatasetClasses:
    folders: tuple  # the class folder names, sorted (torchvision ImageFolder's order)
    names: tuple  # the class names used in prompts, figures and tables
    names_source: str  # where the names come from, for the terminal and the cache's meta
    imagenet_indices: tuple | None  # when every folder is an ImageNet-1k wnid, else None
    templates: tuple  # prompt templates, each containing "{c}"; () for a run without prompts
    templates_source: str
    dataset: str  # a display name for titles


def dataset_classes(split_dir, class_names="openai", class_names_file=None, templates_file=None,
                    prompts="ensemble", folders=None, given_names=None):
    """The classes of split_dir's class folders (or of `folders`, the class ids of a source in
    another layout, whose files sit in split_dir): their names, ImageNet-1k indices and CLIP's
    prompt templates. `prompts` is "ensemble", "single", or None for a model without prompts
    (debiaspl: then no templates are read, and open_clip is not imported). `given_names` are
    names the data carries itself (a parquet dataset's metadata), used when no file names them."""
    split_dir = Path(split_dir)
    folders = tuple(find_class_folders(split_dir) if folders is None else folders)
    imagenet = are_imagenet1k_wnids(folders)
    indices, table_names = describe_classes(folders, class_names) if imagenet else (None, None)
    root = dataset_root(split_dir)
    names_file = names_file_of(split_dir, class_names_file, given_names)
    if names_file:
        names, names_source = read_class_names(names_file, folders, split_dir), str(names_file)
    elif given_names:
        names, names_source = tuple(given_names), "the dataset's metadata"
    elif imagenet:
        names, names_source = tuple(table_names), CLASS_NAME_SOURCES[class_names]
    else:
        names, names_source = folder_names(folders, split_dir, root), FOLDER_NAMES_SOURCE
    if prompts is not None:
        warn_about_names(names, folders, names_source)
    templates, templates_source = prompt_templates(split_dir, templates_file, prompts, imagenet)
    # resolve(): "." names no folder; "/" stays nameless, and is then named by its path.
    dataset = (imagenet and standard_imagenet_name(folders)) or root.resolve().name or str(root)
    return DatasetClasses(folders=folders, names=names, names_source=names_source,
                          imagenet_indices=tuple(indices) if imagenet else None, templates=templates,
                          templates_source=templates_source, dataset=dataset)


def dataset_root(split_dir):
    """The dataset's root: the folder above a val/ or train/ split, else the class folders' own."""
    return split_dir.parent if split_dir.name in SPLITS else split_dir


def dataset_file(split_dir, name):
    """The dataset's `name` file: beside the class folders, or else in the dataset's root. The
    split's own wins, as the more specific (a split whose classes differ from the root's)."""
    for folder in dict.fromkeys((split_dir, dataset_root(split_dir))):
        if (folder / name).is_file():
            return folder / name
    return None


def class_folder_label(folder):
    """A readable class name from a class folder's name: `_` and `-` read as spaces."""
    return " ".join(folder.replace("_", " ").replace("-", " ").split())


def folder_names(folders, split_dir, root):
    """The folders' labels as class names; a wnid would name nothing in a prompt, so folders that
    look like ImageNet's but are not all ImageNet-1k classes are a UserError."""
    fix = (f"write the class names, one per line in sorted folder order, to "
           f"{root / CLASS_NAMES_FILE} or pass --class-names-file FILE.")
    if any(WNID_PATTERN.fullmatch(folder) for folder in folders):
        table = imagenet1k_table()
        raise UserError(not_imagenet1k([folder for folder in folders if folder not in table])
                        + f", and the class folders of {split_dir} look like ImageNet wnids, which "
                          f"name nothing in CLIP's prompts; {fix}")
    names = tuple(class_folder_label(folder) for folder in folders)
    repeated = same_to_clip(names)
    if repeated:
        first, second = (folders[index] for index in repeated[0][:2])
        raise UserError(f"the class folders {first!r} and {second!r} of {split_dir} both read "
                        f"{names[repeated[0][0]]!r} as a class name; {fix}")
    return names


def read_lines(path, what):
    """The stripped lines of a user's text file (as CLIP_benchmark reads them), without the blank
    lines that end it. `what` names the file in errors."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"the {what} {path} does not exist.") from None
    except OSError as error:
        raise UserError(f"cannot read the {what} {path} ({error.strerror or error}).") from None
    data = data.removeprefix(codecs.BOM_UTF8)  # what Windows editors put before UTF-8 text
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UserError(f"line {line} of the {what} {path} is not UTF-8 (byte "
                        f"0x{data[error.start]:02x}); save the file as UTF-8.") from None
    # "\n" only, not str.splitlines: the line numbers are then those an editor shows. A "#" starts
    # no comment: CLIP_benchmark's files have none, and a class name may begin with one.
    lines = [line.strip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def read_class_names(path, folders, split_dir):
    """The class-names file's names, one for each class folder. Blank and repeated names are
    kept, as CLIP_benchmark keeps them (warn_about_names says what they cost)."""
    what = "class-names file"
    names = read_lines(path, what)
    order = "one class name per line, in the sorted order of the class folders' names"
    if len(names) != len(folders):
        where = (f"line {len(names) + 1} would name the folder {folders[len(names)]!r}"
                 if len(names) < len(folders) else
                 f"line {len(folders) + 1} ({names[len(folders)]!r}) has no folder")
        raise UserError(f"the {what} {path} has {len(names)} names but {split_dir} has "
                        f"{len(folders)} class folders ({where}); write {order}.")
    return tuple(names)


def names_file_of(split_dir, class_names_file=None, given_names=None):
    """The file naming the classes: --class-names-file, else the dataset's classnames.txt unless
    the data names its classes itself (`given_names`: a parquet dataset's metadata)."""
    if class_names_file:
        return Path(class_names_file).expanduser()
    return None if given_names else dataset_file(split_dir, CLASS_NAMES_FILE)


def names_for_unnamed_classes(split_dir, class_names_file=None, given_names=None):
    """The class names of a source whose labels are numbers (webdataset shards, parquet), line i
    naming label i: --class-names-file's, else the names the data carries (`given_names`), else
    classnames.txt's."""
    path = names_file_of(Path(split_dir), class_names_file, given_names)
    if path:
        names = read_lines(path, "class-names file")
        if not names:
            raise UserError(f"the class-names file {path} holds no names; write one class name "
                            "per line, line i naming label i.")
        return tuple(names)
    if given_names:
        return tuple(given_names)
    raise UserError(f"the labels of {split_dir} are class numbers and nothing names them: write "
                    f"the class names, one per line with line i naming label i, to "
                    f"{dataset_root(Path(split_dir)) / CLASS_NAMES_FILE} or pass "
                    "--class-names-file FILE.")


def same_to_clip(names):
    """The groups of class indices whose names CLIP cannot tell apart (its tokenizer lowercases
    and collapses whitespace, so "Forest" and "forest" are one text embedding)."""
    groups = {}
    for index, name in enumerate(names):
        groups.setdefault(" ".join(name.lower().split()), []).append(index)
    return [group for group in groups.values() if len(group) > 1]


def warn_about_names(names, folders, names_source):
    """One warning for the names CLIP's prompts cannot tell apart, one for blank names. Both are
    kept rather than refused: CLIP_benchmark's own lists have them (imagenet1k names `missile`
    and `sunglasses` twice, clevr_closest_object_distance has a blank name), its published
    numbers are made with them, and refusing would leave those datasets unusable."""
    repeated = same_to_clip(names)
    if repeated:
        listed = "; ".join(f"{names[group[0]]!r} ({', '.join(folders[index] for index in group)})"
                           for group in repeated)
        print(f"warning: the class names of {names_source} give {len(repeated)} name(s) to "
              f"several classes, whose prompts are then the same, so CLIP cannot tell them apart: "
              f"{listed}.", file=sys.stderr)
    blank = [folders[index] for index, name in enumerate(names) if not name.strip()]
    if blank:
        print(f"warning: {names_source} gives the class(es) {', '.join(blank)} a blank name, so "
              "their prompts name no class (CLIP_benchmark evaluates them so).", file=sys.stderr)


def read_templates(path):
    what = "templates file"
    templates = read_lines(path, what)
    rule = f"each line is one template, with {CLASS_PLACEHOLDER} where the class name goes"
    if not templates:
        raise UserError(f"the {what} {path} holds no templates; {rule}.")
    for number, template in enumerate(templates, 1):
        if CLASS_PLACEHOLDER not in template:
            problem = f"({template!r}) has no {CLASS_PLACEHOLDER}" if template else "is blank"
            raise UserError(f"line {number} of the {what} {path} {problem}; {rule}.")
    return tuple(templates)


def prompt_templates(split_dir, templates_file, prompts, imagenet):
    """(templates, where they come from): --templates FILE, else the dataset's templates file,
    else OpenAI's 80 for ImageNet classes (CLIP's published protocol) and the single prompt for
    others (OpenAI's 80 are written for ImageNet's objects; a dataset of other things should
    ship its own). --prompts single is the single prompt, whatever files the dataset has."""
    if prompts is None:
        return (), "none (the model uses no prompts)"
    if prompts == "single":
        if templates_file:
            raise UserError(f"--prompts single uses exactly {SINGLE_TEMPLATE!r}, so --templates "
                            f"{templates_file} would be ignored; pass one of the two.")
        return (SINGLE_TEMPLATE,), repr(SINGLE_TEMPLATE)
    path = (Path(templates_file).expanduser() if templates_file
            else dataset_file(split_dir, TEMPLATES_FILE))
    if path:
        return read_templates(path), str(path)
    if imagenet:
        return openai_imagenet_templates(), OPENAI_TEMPLATES_SOURCE
    return (SINGLE_TEMPLATE,), repr(SINGLE_TEMPLATE)


def openai_imagenet_templates():
    """OpenAI's 80 ImageNet templates with {c}; open_clip imports torch, hence only here."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
    return tuple(template(CLASS_PLACEHOLDER) for template in OPENAI_IMAGENET_TEMPLATES)


def fill_template(template, name):
    """A template's prompt for one class. str.replace, not str.format: a template from a file may
    hold other braces."""
    return template.replace(CLASS_PLACEHOLDER, name)
