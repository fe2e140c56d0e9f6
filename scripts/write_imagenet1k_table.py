#!/usr/bin/env python3
"""Write imagenet1k.tsv: the 1,000 ImageNet-1k classes with their wnid, class index, CLIP's
curated name and WordNet name, so that no run needs open_clip or timm to name its classes.

    python scripts/write_imagenet1k_table.py

Sources: timm's ImageNetInfo (wnids in class-index order, WordNet lemmas) and open_clip's
IMAGENET_CLASSNAMES (OpenAI's curated names). tests/test_classes.py checks the shipped file
against both, so it cannot drift.
"""
import csv
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from sources import classes  # noqa: E402


def table_rows():
    """One dict per ImageNet-1k class, in class-index order, with classes.TABLE_COLUMNS keys."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from timm.data import ImageNetInfo
    info = ImageNetInfo("imagenet-1k")
    rows = []
    for index, (wnid, lemmas) in enumerate(zip(info.label_names(), info.label_descriptions())):
        rows.append({"wnid": wnid, "imagenet1k_index": str(index),
                     "clip_name": IMAGENET_CLASSNAMES[index],
                     "wordnet_name": lemmas.split(", ")[0], "wordnet_lemmas": lemmas})
    return rows


def main():
    with classes.IMAGENET1K_TABLE.open("w", newline="") as table:
        writer = csv.DictWriter(table, fieldnames=classes.TABLE_COLUMNS, delimiter="\t",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(table_rows())
    print(f"wrote {classes.IMAGENET1K_TABLE}")


if __name__ == "__main__":
    main()
