"""Which layout --data is in (and --labels), opened as a sources.samples.SampleSource, and the
classes it holds. stdlib and numpy at import (pyarrow only when a parquet file is read).
"""
from pathlib import Path

from runs.outputs import UserError
from sources import classes
from sources.flat import FlatSource
from sources.folder import FolderSource
from sources.parquet import ParquetSource, hugging_face_files
from sources.samples import check_labels, expand_braces, is_shard_pattern, natural_key
from sources.shards import ShardSource


def open_source(data, split=None, labels_file=None, index_dir=None):
    """(split, SampleSource) of --data: a flat folder with --labels FILE, webdataset shards (a
    folder of .tar files or a brace pattern), parquet files (a folder of .parquet files, or a
    Hugging Face dataset's root holding data/), else an ImageFolder tree. `index_dir` is where
    the shards' index is cached (the run's OUT/cache)."""
    if labels_file is not None:
        split, split_dir = classes.resolve_split_dir(data, split)
        return split, FlatSource(split_dir, labels_file)
    if is_shard_pattern(data):
        shards = [Path(name).expanduser() for name in expand_braces(str(data))]
        missing = [shard for shard in shards if not shard.is_file()]
        if missing:
            raise UserError(f"the shard {missing[0]} of --data {data} does not exist"
                            + (f" (nor do {len(missing) - 1} others)" if len(missing) > 1 else "")
                            + "; check the pattern.")
        folder = shards[0].parent
        split = split or (folder.name if folder.name in classes.SPLITS else classes.SPLITS[0])
        return split, ShardSource(shards, folder, str(data), index_dir)
    root = Path(data).expanduser()
    parquet = hugging_face_files(root, split)
    if parquet:
        chosen, files = parquet
        return chosen, ParquetSource(files, root, str(data))
    split, split_dir = classes.resolve_split_dir(data, split)
    shards = sorted(split_dir.glob("*.tar"), key=natural_key)
    if shards:
        return split, ShardSource(shards, split_dir, str(split_dir), index_dir)
    files = sorted(split_dir.glob("*.parquet"), key=natural_key)
    if files:
        return split, ParquetSource(files, split_dir, str(split_dir))
    return split, FolderSource(split_dir)


def describe_source(source, class_names="openai", class_names_file=None, templates_file=None,
                    prompts="ensemble"):
    """The source's classes.DatasetClasses: its class ids (folder names, wnids) when it has
    them; else the names of the class-names file (shards: CLIP_benchmark's classnames.txt), a
    name standing for its class. Stops when a label has no class."""
    ids = source.class_ids
    if ids is None:
        names = classes.names_for_unnamed_classes(source.split_dir, class_names_file, source.class_names)
        ids = class_ids_of_names(names)
    described = classes.dataset_classes(source.split_dir, class_names, class_names_file,
                                        templates_file, prompts, folders=ids,
                                        given_names=source.class_names)
    check_labels(source.labels, len(described.folders), source.location)
    return described


def class_ids_of_names(names):
    """Class ids from class names, for a layout whose labels are numbers: the names themselves,
    a repeated one (CLIP_benchmark's lists have some) suffixed with its class number."""
    seen = set()
    ids = []
    for index, name in enumerate(names):
        ids.append(name if name not in seen and name else f"{name}#{index}")
        seen.add(name)
    return tuple(ids)
