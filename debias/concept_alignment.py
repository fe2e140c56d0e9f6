"""`--model clip-ca`: a training-free test of the concept-mismatch diagnosis (CAP, §3.1 and
Appendix B.3, with WordNet's synonyms in place of CAP's LLM descriptions).

Algorithm 1 (concepts.detect_mismatched_classes) finds the classes whose text embedding misses
their images in clip's cached image features (read from the source run's algorithm1.npz when its
analysis made it from the same features and settings). For each, every alternative name (the
wnid's WordNet lemmas from imagenet1k.tsv, and its current name) is embedded by CLIP's text
encoder with clip's own prompts, and the one that best matches a K-means centre of the images
Algorithm 1 left replaces the class's text embedding. The logits are then recomputed from the
cached image features, logit_scale x image_features @ text_features.T, without reading an image.
If the diagnosis is right, the recall of those classes rises. Writes alignment.json beside the
cache.
"""
import sys
from pathlib import Path

import numpy as np

from sources import classes
from analysis import concepts
from analysis import why
from runs.cache import in_blocks, load_predictions, write_predictions
from runs.errors import MissingFeatures
from runs.kinds import CONCEPT_ALIGNED_MODEL
from runs.outputs import UserError, read_json, write_json
from inference.text_encoder import clip_text_embedder
from debias.training_free import derived_meta, load_clip_cache


def alternative_names(wnid, current_name, given=None):
    """The current name first, then the wnid's WordNet lemmas (ImageNet classes) and the names
    `given` for the class (--ca-names: by folder name or class name), without repeats."""
    row = classes.imagenet1k_table().get(wnid)
    lemmas = row["wordnet_lemmas"].split(", ") if row else []
    given = given or {}
    return list(dict.fromkeys([current_name, *lemmas, *given.get(wnid, given.get(current_name, []))]))


def read_alternative_names(path):
    """--ca-names: a JSON object {class folder or class name: [alternative names]}."""
    names = read_json(path, "the --ca-names file")
    if not (isinstance(names, dict) and all(isinstance(value, list) and all(
            isinstance(name, str) and name.strip() for name in value) for value in names.values())):
        raise UserError(f"the --ca-names file {path} must hold one JSON object of class (folder "
                        "name or class name) to a list of alternative names, e.g. "
                        '{"annual_crop": ["farmland", "crop field"]}.')
    return names


def aligned_text_features(clip, detection, embed, given_names=None):
    """(text features [K, D] with each mismatched class's row replaced by its best alternative
    name's embedding, [{class, candidates, chosen}] for alignment.json)."""
    text_features = np.array(clip.text_features, dtype=np.float32)
    choices = []
    for index in detection.mismatched:
        wnid, name = str(clip.wnids[index]), str(clip.names[index])
        candidates = alternative_names(wnid, name, given_names)
        embeddings = np.asarray(embed(candidates), dtype=np.float32)
        chosen = concepts.best_candidate(embeddings, detection.remaining_centres)
        text_features[index] = embeddings[chosen]
        choices.append({"wnid": wnid, "name": name, "candidates": candidates,
                        "chosen": candidates[chosen], "renamed": chosen != 0})
    return text_features, choices


def align_clip_concepts(settings, out_dir, run_dir, embed=None):
    """clip-ca's Predictions, as `settings` (DerivedRunSettings) say, written to
    RUN/predictions.npz with alignment.json; `embed` (names -> unit text embeddings) defaults to
    the source's own CLIP text encoder."""
    source, alignment = settings.source, settings.concept_alignment
    clip = load_clip_cache(out_dir, CONCEPT_ALIGNED_MODEL, source)
    if clip.image_features is None:
        raise MissingFeatures(source, clip.meta["model"], f"--model {CONCEPT_ALIGNED_MODEL}",
                              Path(out_dir) / source / "predictions.npz")
    predicted, confidence = concepts.pseudo_labels_and_confidence(clip.logits)
    saved = Path(out_dir) / source / why.DETECTION_FILE  # the source run's analysis's, if the same
    detection, _, reused = why.detect(clip, predicted, confidence, alignment.seed,
                                      alignment.max_images or concepts.MAX_DETECTION_IMAGES, saved)
    if reused:
        print(f"Algorithm 1: the detection of {source}'s analysis ({saved}), made from the same "
              "features and settings")
    if detection.sampled:
        print(f"note: Algorithm 1 ran on a seeded sample of {detection.num_images_used} of the "
              f"{len(clip.labels)} images (--ca-max-images).", file=sys.stderr)
    given_names = read_alternative_names(alignment.names_file) if alignment.names_file else None
    execution = settings.execution
    embed = embed or clip_text_embedder(clip.meta, execution.device, execution.trust_checkpoint,
                                        execution.text_cache_dir,
                                        needed_by=f"--model {CONCEPT_ALIGNED_MODEL}")
    text_features, choices = aligned_text_features(clip, detection, embed, given_names)
    renamed = [f"{choice['name']} -> {choice['chosen']}" for choice in choices if choice["renamed"]]
    print(f"concept alignment: {len(choices)} mismatched classes; "
          + (f"renamed {', '.join(renamed)}" if renamed else "none has a better-matching name"))
    recorded = {"seed": alignment.seed,
                "images_used": detection.num_images_used, "sampled": detection.sampled,
                "stop_at": len(detection.remaining_classes), "n_init": concepts.DETECTION_N_INIT}
    write_json(run_dir / why.ALIGNMENT_FILE, {
        "model": CONCEPT_ALIGNED_MODEL, "settings": recorded, "mismatched": choices,
        "remaining_classes": [str(clip.wnids[index]) for index in detection.remaining_classes],
        "matched_order": [str(clip.wnids[index]) for index in detection.matched_order]})
    scale = clip.meta["logit_scale"]
    cache = run_dir / "predictions.npz"
    meta = {**derived_meta(CONCEPT_ALIGNED_MODEL, clip, source), "concept_alignment": recorded,
            "logit_scale": scale}
    features = (in_blocks(clip.image_features), clip.image_features.shape, text_features)
    write_predictions(cache, concepts.logit_blocks(clip.image_features, text_features, scale),
                      clip.logits.shape, clip.labels, clip.paths, clip.wnids, clip.names, meta,
                      features)
    return load_predictions(cache)
