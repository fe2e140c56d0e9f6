"""Why a run's pseudo-labels are imbalanced: why.json, beside metrics.json.

- Every run: Figure 4's claim ("the less frequently predicted classes usually have strong
  inter-class correlations, while the most frequently predicted classes are the opposite"),
  tested as the Spearman correlation between each class's predicted count and the mean cosine of
  its 10 nearest centroids (images grouped by pseudo-label), literal and centered.
- Runs that keep CLIP's features (clip, clip-ca): the CAP paper's two causes. Concept mismatch:
  each class's concept gap, the cosine between its text embedding and its visual prototype, and
  whether its own text is the one nearest to its images. Concept confusion: the class pairs that
  CAP's confusion-aware margin would push apart most, next to the run's largest confusions.
  And Algorithm 1's verdict on every class (mismatch_verdicts): its input is the two feature
  arrays, so a brought cache needs no model or weights for it. It costs seconds at ImageNet100's
  size (tens on two busy cores); clip-ca reuses the same detection to rename the classes.
numpy and scipy.special only (through concepts.py), like the rest of the analysis.
"""
import functools
import zipfile
from pathlib import Path

import numpy as np

from analysis import concepts
import metrics
from runs.outputs import none_if_nan, read_json, write_atomic
from runs.descriptors import default_run_name
from runs.kinds import CONCEPT_ALIGNED_MODEL, ZERO_SHOT_CLIP, nature_of

GAP_LISTED = 10  # classes listed with the widest concept gap
WHY_FILE = "why.json"
ALIGNMENT_FILE = "alignment.json"  # clip-ca's: the mismatched classes and their new names
# Algorithm 1's detection behind why.json's verdict, with the digest of its inputs: clip-ca reuses
# it instead of clustering the same features again (tens of seconds at ImageNet100's size).
DETECTION_FILE = "algorithm1.npz"


def claim_json(claim):
    return {"rho": none_if_nan(claim.rho), "p_value": none_if_nan(claim.p_value),
            "num_classes": claim.num_classes, "supported": claim.supported,
            "sentence": claim.sentence}


def centroid_cosines(centroids):
    """{"literal", "centered"}: the [K, K] cosines between the centroids by pseudo-label [K, K'] and
    between the centered ones (NaN where a centroid is undefined): Figure 4's test and the
    explorer's nearest centroids both read them."""
    return {"literal": concepts.cosine_matrix(centroids, centroids),
            "centered": concepts.cosine_matrix(*[metrics.centered_centroids(centroids)] * 2)}


def figure4_tests(predicted_counts, cosines):
    """{"literal", "centered"}: Figure 4's claim on each of centroid_cosines."""
    return {kind: claim_json(concepts.figure4_claim(predicted_counts, cosine))
            for kind, cosine in cosines.items()}


def aligned_wnids(alignment_run_dir):
    """The mismatched classes of a clip-ca run folder's alignment.json; None without one."""
    path = Path(alignment_run_dir) / ALIGNMENT_FILE
    if not path.is_file():
        return None
    alignment = read_json(path, f"{path.parent.name}'s {ALIGNMENT_FILE}")
    return [entry["wnid"] for entry in alignment["mismatched"]]


def run_mismatches(model, run_dir, out_dir, diagnosis=None):
    """The classes (wnids) Algorithm 1 found concept-mismatched for the run `model` made in
    run_dir, None when unknown: a clip-ca run's alignment.json (the classes it renamed); a run's
    own verdict (`diagnosis`, its why.json); for a zero-shot CLIP run without one (a cache without
    features), its clip-ca run's alignment.json. The one answer behind the histograms' marks,
    the explorer and the study."""
    run_dir = Path(run_dir)
    if model == CONCEPT_ALIGNED_MODEL:
        return aligned_wnids(run_dir)
    mismatch = ((diagnosis or {}).get("concepts") or {}).get("mismatch")
    if mismatch:
        return [entry["wnid"] for entry in mismatch["mismatched"]]
    if nature_of(model) == ZERO_SHOT_CLIP:
        return aligned_wnids(Path(out_dir) / default_run_name(CONCEPT_ALIGNED_MODEL, source=run_dir.name))
    return None


def class_entry(wnids, names, index):
    return {"wnid": str(wnids[index]), "name": str(names[index])}


def concept_gaps(predictions, predicted):
    """(per grouping, by_true and by_predicted: each class's concept gap, and whose text is
    nearest to its images when it is not its own; the visual prototypes by pseudo-label)."""
    groupings = {"by_true": predictions.labels, "by_predicted": predicted}
    num_classes = len(predictions.wnids)
    gaps, prototypes = {}, {}
    for grouping, groups in groupings.items():
        prototypes[grouping] = concepts.visual_prototypes(predictions.image_features, groups, num_classes)
        gap = concepts.concept_gap(predictions.text_features, prototypes[grouping])
        gaps[grouping] = [
            {**class_entry(predictions.wnids, predictions.names, k), "cosine": none_if_nan(gap.cosine[k]),
             "own_text_nearest": bool(gap.own_text_nearest[k]),
             "nearest_text": (None if gap.nearest_text[k] < 0 or gap.own_text_nearest[k] else
                              class_entry(predictions.wnids, predictions.names, gap.nearest_text[k]))}
            for k in range(num_classes)]
    return gaps, prototypes["by_predicted"]  # CAP's, computable without labels


def margin_pairs(predictions, predicted, confidence, prototypes, top_confusions):
    """CAP's calibrated margin's largest pairs (class k, class j) and how many of them are among
    the run's largest confusions (true k, predicted j)."""
    num_classes = len(predictions.wnids)
    tendency = concepts.prediction_tendency(
        concepts.confident_counts(predicted, confidence, num_classes))
    similarity = concepts.class_similarity(predictions.text_features, prototypes)
    margin = concepts.calibrated_margin(similarity, tendency, concepts.imbalance_degree(tendency))
    pairs = concepts.largest_margin_pairs(margin)
    index_of = {str(wnid): k for k, wnid in enumerate(predictions.wnids)}
    confusion_pairs = [(index_of[cell["true"]["wnid"]], index_of[cell["predicted"]["wnid"]])
                       for cell in top_confusions]
    return {"similarity": "element-wise maximum of the text-text and the visual-prototype cosines "
                          "(prototypes by pseudo-label, as CAP computes them without labels)",
            "confidence_threshold": concepts.CONFIDENCE_THRESHOLD, "scale": concepts.MARGIN_SCALE,
            "pairs": [{"class": class_entry(predictions.wnids, predictions.names, k),
                       "other": class_entry(predictions.wnids, predictions.names, j),
                       "margin": float(margin[k, j])} for k, j in zip(*pairs)],
            "coinciding_with_top_confusions": concepts.coinciding_pairs(
                list(zip(*pairs)), confusion_pairs),
            "top_confusions_compared": len(confusion_pairs)}


def diagnose(predictions, predicted, confidence, cosines, summary):
    """(why.json's content for one run, (Algorithm 1's detection, its digest) or None without
    features) (`predicted`, `confidence` [N] from the analysis's pass, `cosines` its
    centroid_cosines)."""
    counts = np.array([entry["predicted_count"] for entry in summary["classes"]])
    why = {"model": summary["model"], "figure4": figure4_tests(counts, cosines)}
    if predictions.image_features is None:
        why["concepts"] = None  # the logits alone cannot tell: see concept_note
        return why, None
    gaps, prototypes = concept_gaps(predictions, predicted)
    detection, digest, _ = detect(predictions, predicted, confidence)
    why["concepts"] = {"gap": gaps, "margin": margin_pairs(predictions, predicted, confidence,
                                                           prototypes, summary["top_confusions"]),
                       "mismatch": mismatch_verdicts(predictions, detection)}
    return why, (detection, digest)


def detect(predictions, predicted, confidence, seed=0, max_images=concepts.MAX_DETECTION_IMAGES,
           saved=None):
    """(Algorithm 1's detection on the run's features, the digest of its inputs, whether it was
    read): the one saved in the file `saved` (a DETECTION_FILE) when that was made from the same
    inputs, else made now."""
    digest = concepts.detection_digest(predictions.image_features, predictions.text_features,
                                       predicted, confidence, random_state=seed, max_images=max_images)
    detection = saved_detection(saved, digest) if saved else None
    if detection is not None:
        return detection, digest, True
    return concepts.detect_mismatched_classes(
        predictions.image_features, predictions.text_features, predicted, confidence,
        random_state=seed, max_images=max_images), digest, False


def save_detection(path, detection, digest):
    """Write the detection and the digest of its inputs to `path` (npz), atomically."""
    arrays = {field: np.asarray(value) for field, value in vars(detection).items()}
    write_atomic(path, lambda file: np.savez(file, digest=np.array(digest), **arrays))


def saved_detection(path, digest):
    """The MismatchDetection saved at `path` from the inputs `digest` names; None when there is
    none, it cannot be read, or it was made from other inputs (or by other code)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = dict(archive)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if str(arrays.pop("digest", "")) != digest:
        return None
    try:
        detection = concepts.MismatchDetection(**arrays)
    except TypeError:  # fields of another version
        return None
    detection.num_images_used, detection.sampled = int(detection.num_images_used), bool(detection.sampled)
    return detection


def mismatch_verdicts(predictions, detection, seed=0):
    """Algorithm 1's detection on the run's features as why.json says it: its settings, the
    mismatched classes (fewest predictions first) and every class's verdict (left unmatched,
    mismatched)."""
    remaining = set(detection.remaining_classes.tolist())
    mismatched = set(detection.mismatched.tolist())
    entry = functools.partial(class_entry, predictions.wnids, predictions.names)
    return {"algorithm": "CAP's Algorithm 1 on the cached image and text features",
            "settings": {"seed": seed, "images_used": detection.num_images_used,
                         "sampled": detection.sampled, "n_init": concepts.DETECTION_N_INIT,
                         "stop_at": len(detection.remaining_classes)},
            "mismatched": [entry(k) for k in detection.mismatched.tolist()],
            "classes": [{**entry(k), "left_unmatched": k in remaining, "mismatched": k in mismatched}
                        for k in range(len(predictions.wnids))]}


CONCEPT_NOTE = ("concept mismatch and confusion need CLIP's image features: make the CLIP run "
                "again without --no-features (older caches have none)")


def widest_gaps(why, count=GAP_LISTED):
    """The classes of widest concept gap (lowest cosine, images grouped by true label)."""
    entries = [entry for entry in why["concepts"]["gap"]["by_true"] if entry["cosine"] is not None]
    return sorted(entries, key=lambda entry: entry["cosine"])[:count]


def figure4_lines(figure4):
    """The terminal's lines of Figure 4's test (metrics.json's figure4_claim)."""
    return ["-- Figure 4's claim, tested (why.json has the causes of imbalance) --",
            f"literal centroids: {figure4['literal']['sentence']}",
            f"centered centroids: {figure4['centered']['sentence']}"]
