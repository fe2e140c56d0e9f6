"""--rescore RUN: a CLIP run's cached image features re-predicted with other prompts or class
names, without reading an image: the research loop "change the prompts, see the imbalance
change" in the time CLIP's text encoder takes for the new class embeddings (the logits are one
matrix product, logit_scale x image_features @ text_features.T, as clip-ca's).

The new run is a clip run like any other (its folder, metrics, figures, why.json); its meta is
the source's, with the new templates and names, and `rescored_from` naming the source run.
"""
import sys
from pathlib import Path

from analysis import concepts
from runs.cache import in_blocks, load_predictions, write_predictions
from runs.errors import MissingFeatures, MissingRun
from runs.outputs import UserError
from sources import classes
from inference.text_encoder import clip_text_embedder

RESCORED_SUFFIX = "-rescored"  # the default run folder: OUT/<source>-rescored


def default_run_name(source):
    return f"{source}{RESCORED_SUFFIX}"


def new_prompts(meta, templates_file=None, prompts=None):
    """(templates, where they come from): --templates FILE, else --prompts single's one prompt,
    else the source run's own."""
    if templates_file:
        return classes.read_templates(Path(templates_file).expanduser()), str(templates_file)
    if prompts == "single":
        return (classes.SINGLE_TEMPLATE,), repr(classes.SINGLE_TEMPLATE)
    return tuple(meta.get("templates") or ()), meta.get("templates_source", "the source run's")


def new_names(source, class_names_file=None, class_names=None):
    """(class names, where they come from): --class-names-file (one per class, in the source's
    class order), else --class-names's ImageNet table column for wnid classes when it differs
    from the source's, else the source's names."""
    wnids = [str(wnid) for wnid in source.wnids]
    if class_names_file:
        path = Path(class_names_file).expanduser()
        return classes.read_class_names(path, wnids, "the source run"), str(path)
    if class_names and class_names != source.meta.get("class_names", "openai") \
            and classes.are_imagenet1k_wnids(wnids):
        return tuple(classes.describe_classes(wnids, class_names)[1]), classes.CLASS_NAME_SOURCES[class_names]
    return tuple(str(name) for name in source.names), source.meta.get("names_source", "the source run's")


def rescore(source_run, out_dir, run_dir, templates_file=None, prompts=None, class_names_file=None,
            class_names=None, device="auto", trust=False):
    """The Predictions of OUT/<source_run>'s image features under the new prompts and names,
    written to RUN/predictions.npz; the names are embedded by the text encoder of the CLIP that
    made the source's cache."""
    path = Path(out_dir) / source_run / "predictions.npz"
    if not path.is_file():
        others = sorted(folder.name for folder in Path(out_dir).glob("*/predictions.npz"))
        raise MissingRun(source_run, None, f"--rescore {source_run}", "re-predict its cached image "
                         "features", path, others=[Path(other).parent.name for other in others],
                         choose_with="--rescore")
    source = load_predictions(path)
    if source.image_features is None or "logit_scale" not in source.meta:
        raise MissingFeatures(source_run, None, "--rescore", path)
    templates, templates_source = new_prompts(source.meta, templates_file, prompts)
    names, names_source = new_names(source, class_names_file, class_names)
    if not templates:
        raise UserError(f"{path} records no prompt templates; pass --templates FILE.")
    embed = clip_text_embedder(source.meta, device, trust, Path(out_dir) / "cache", templates,
                               needed_by="--rescore")
    text_features = embed(list(names))
    print(f"rescore: {len(names)} classes x {len(templates)} templates from {templates_source}, "
          f"names from {names_source}, on the {len(source.labels)} cached image features of "
          f"{source_run}", file=sys.stderr)
    scale = source.meta["logit_scale"]
    meta = {**source.meta, "templates": list(templates), "templates_source": templates_source,
            "names_source": names_source, "rescored_from": source_run}
    meta.pop("prompts", None)  # the templates say what the prompts are
    cache = Path(run_dir) / "predictions.npz"
    write_predictions(cache, concepts.logit_blocks(source.image_features, text_features, scale),
                      source.logits.shape, source.labels, source.paths, source.wnids, names, meta,
                      (in_blocks(source.image_features), source.image_features.shape, text_features))
    return load_predictions(cache)
