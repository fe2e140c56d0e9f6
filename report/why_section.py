"""Why the pseudo-labels are imbalanced: Figure 4's claim on every run, then concept mismatch and
confusion (the CAP paper's two causes) in a CLIP run's features, from its why.json (the homework
report shows clip's, the study every run's) and alignment.json."""
from pathlib import Path

from analysis import why
from runs.outputs import plural, read_json
from runs.kinds import CONCEPT_ALIGNED_MODEL, REFERENCE_MODEL

from .content import Section, Table, Text, format_number


ALIGNMENT_FILE = "alignment.json"  # clip-ca's mismatched classes and their new names


def figure4_table(runs):
    """One row per run: Figure 4's claim tested on its literal and centered centroids."""
    rows = []
    for model, run in runs.items():
        claims = (run.metrics or {}).get("figure4_claim")
        if claims:
            rows.append([model] + [cell for kind in ("literal", "centered") for cell in (
                format_number(claims[kind]["rho"], 3), format_number(claims[kind]["p_value"], 3),
                "yes" if claims[kind]["supported"] else "no")])
    return Table(["run", "ρ (literal)", "p", "supported", "ρ (centered)", "p", "supported"], rows,
                 "Figure 4's claim: Spearman ρ of each class's predicted count against the mean "
                 "cosine of its 10 nearest centroids (images grouped by pseudo-label); supported "
                 "when ρ < 0 with p < 0.05", compact=True)


def gap_table(diagnosis):
    """clip's widest concept gaps."""
    gaps = why.widest_gaps(diagnosis)
    return Table(["class", "text-image cosine", "nearest text, if not its own"],
                 [[f"{entry['name']} ({entry['wnid']})", format_number(entry["cosine"], 3),
                   "" if entry["own_text_nearest"] else entry["nearest_text"]["name"]]
                  for entry in gaps],
                 f"Concept mismatch: the {plural(len(gaps), 'class')} whose text embedding is "
                 "farthest from their images (cosine of the text embedding and the normalised mean "
                 "image embedding, images grouped by true label)", compact=True)


def margin_text(diagnosis, model):
    """CAP's confusion-aware margin against the run `model`'s largest confusions, in one
    sentence."""
    margin = diagnosis["concepts"]["margin"]
    return Text(f"Concept confusion: {margin['coinciding_with_top_confusions']} of the "
                f"{plural(len(margin['pairs']), 'class pair')} that CAP's confusion-aware margin "
                f"would push apart most are among {model}'s "
                f"{margin['top_confusions_compared']} largest confusions (similarity: "
                f"{margin['similarity']}).")


def alignment_block(runs, out_dir, diagnosis):
    """The classes Algorithm 1 found concept-mismatched in clip's features (clip's why.json) with
    their recall, and clip-ca's new name for each once it has run (its alignment.json)."""
    path = Path(out_dir) / CONCEPT_ALIGNED_MODEL / ALIGNMENT_FILE
    aligned = read_json(path, f"{CONCEPT_ALIGNED_MODEL}'s {ALIGNMENT_FILE}") if path.is_file() else None
    mismatch = diagnosis["concepts"].get("mismatch")
    if mismatch is None and aligned is None:  # a why.json from before the analysis ran Algorithm 1
        return Text("Algorithm 1 (CAP's detection of concept-mismatched classes) runs with "
                    f"`{runs.command(CONCEPT_ALIGNED_MODEL)}`.", "note")
    recall = {model: {entry["wnid"]: entry["recall"] for entry in runs[model].metrics["classes"]}
              for model in (REFERENCE_MODEL, CONCEPT_ALIGNED_MODEL)
              if model in runs and runs[model].metrics is not None}
    chosen = {entry["wnid"]: entry["chosen"] if entry["renamed"] else "(kept)"
              for entry in (aligned or {}).get("mismatched", [])}
    classes = mismatch["mismatched"] if mismatch else aligned["mismatched"]
    rows = [[f"{entry['name']} ({entry['wnid']})", chosen.get(entry["wnid"], "")]
            + [format_number(recall[model].get(entry["wnid"]), 3) for model in recall]
            for entry in classes]
    renaming = (f"{CONCEPT_ALIGNED_MODEL}'s WordNet synonym for each" if aligned else
                f"`{runs.command(CONCEPT_ALIGNED_MODEL)}` renames them")
    return Table(["mismatched class", "renamed to", *(f"recall, {model}" for model in recall)], rows,
                 f"Concept-mismatched classes found by Algorithm 1 in {REFERENCE_MODEL}'s image "
                 f"features; {renaming}", compact=True)


def run_diagnosis(run):
    """A run's why.json, None when it has none (or there is no run)."""
    return None if run is None else run.why


def concept_blocks(run, diagnosis):
    """The CAP paper's two causes in a run's CLIP features (its why.json's concepts): its widest
    concept gaps, and CAP's margin against its largest confusions."""
    return [gap_table(diagnosis), margin_text(diagnosis, run.model)]


def no_concepts_note(diagnosis):
    """The note that replaces the concept analysis, None when clip's why.json has one."""
    if diagnosis is None or diagnosis["concepts"] is None:
        return Text(f"No concept analysis: {why.CONCEPT_NOTE}.", "note")
    return None


def why_section(runs, out_dir):
    """Why the pseudo-labels are imbalanced: Figure 4's claim on every run, then the CAP paper's
    two causes in clip's features."""
    section = Section("Why", "the causes of imbalance (Figure 4's claim; concept mismatch and "
                             "confusion, CAP)", [figure4_table(runs)])
    clip = runs.get(REFERENCE_MODEL)
    diagnosis = run_diagnosis(clip)
    note = no_concepts_note(diagnosis)
    section.blocks += ([note] if note else
                       [*concept_blocks(clip, diagnosis), alignment_block(runs, out_dir, diagnosis)])
    return section


def why_in_brief(runs):
    """Page 5's Why: Figure 4's claim on every run and one sentence per cause."""
    blocks = [figure4_table(runs)]
    diagnosis = run_diagnosis(runs.get(REFERENCE_MODEL))
    note = no_concepts_note(diagnosis)
    if note:
        return blocks + [note]
    gaps = why.widest_gaps(diagnosis)
    return blocks + [
        Text(f"Concept mismatch: the {plural(len(gaps), 'class')} whose text embedding is farthest "
             f"from their images ({REFERENCE_MODEL}): "
             + ", ".join(f"{entry['name']} ({format_number(entry['cosine'], 3)})" for entry in gaps)
             + "." + mismatch_sentence(diagnosis)),
        margin_text(diagnosis, REFERENCE_MODEL)]


def mismatch_sentence(diagnosis):
    """Algorithm 1's verdict in clip's why.json, as one more sentence ("" in an older why.json)."""
    mismatch = diagnosis["concepts"].get("mismatch")
    if mismatch is None:
        return ""
    named = ", ".join(entry["name"] for entry in mismatch["mismatched"]) or "none"
    return (f" Algorithm 1 (CAP) finds {plural(len(mismatch['mismatched']), 'class', 'classes')} "
            f"concept-mismatched: {named}.")
