"""Which classes (a) and (c) look at, and whose numbers they are.

A role ("least predicted by clip") is defined by one run's ranking of the classes, and every count
shown with it names its run ("front curtain: clip 0, debiaspl 57"): Q2(c) looks at clip's most and
least predicted classes in DebiasPL's logits, so two runs' counts meet on one line. Ties are
stated for the run whose ranking defines the role.

The zero-prediction rule (ZERO_PREDICTION_RULE): a class no image is predicted as has no centroid
by predicted label, so (c) would have an empty half. It then answers with the least predicted
class that has one, and names the never-predicted classes beside it, with their neighbours by
true label (which every class with images has) as the secondary view.
"""
from dataclasses import dataclass

from runs.outputs import plural

ZERO_PREDICTION_RULE = (
    "A never-predicted class has no centroid, so (c) answers with the least predicted class that "
    "was predicted, names the never-predicted ones beside it, and gives their nearest centroids "
    "by true label as a secondary view.")
NEVER_PREDICTED = "never predicted"  # the role of a never-predicted class in the secondary view
AT_LEAST_ONCE = " with ≥ 1 prediction"  # a least predicted role chosen by the rule


@dataclass
class Ranking:
    """One run's classes ranked by how often each is predicted: the order that defines the roles,
    and the counts behind it."""
    run: str  # the run folder's name, which every count shown is labelled with
    order: list  # wnids, most to least predicted, ties broken by class index
    counts: dict  # {wnid: predictions}

    def ties(self, wnid):
        """How many other classes this run predicts as often as `wnid`."""
        return sum(count == self.counts[wnid] for count in self.counts.values()) - 1

    def never_predicted(self):
        """The wnids this run never predicts, in its order (by class index)."""
        return [wnid for wnid in self.order if self.counts[wnid] == 0]


@dataclass
class Role:
    label: str  # "most predicted", "least predicted by clip", ...
    wnid: str
    ranking: Ranking  # the run whose ranking defines it
    never_predicted: tuple = ()  # wnids set aside by the zero-prediction rule


def class_roles(this, reference=None):
    """The classes who-steals-from-whom looks at: the most and least predicted by this run and,
    for a run in another run's order (Q2: clip's), by that run as well."""
    rankings = [(this, "")] + ([(reference, f" by {reference.run}")] if reference else [])
    return [Role(f"{end} predicted{by}", ranking.order[position], ranking)
            for ranking, by in rankings for end, position in (("most", 0), ("least", -1))]


def centroid_roles(this, reference=None):
    """The classes (c) answers for: class_roles with the zero-prediction rule applied, so that a
    least predicted role whose class was never predicted moves to the least predicted class that
    was predicted, keeping the never-predicted ones beside it. Where only one class was predicted
    (random weights), that class is already the most predicted one: the role stays, with its note
    of no centroid."""
    roles = []
    for role in class_roles(this, reference):
        never = role.ranking.never_predicted()
        predicted = [wnid for wnid in role.ranking.order if wnid not in set(never)]
        if role.wnid in never and len(predicted) > 1:
            role = Role(role.label + AT_LEAST_ONCE, predicted[-1], role.ranking, tuple(never))
        roles.append(role)
    return roles


def secondary_roles(roles):
    """The never-predicted classes beside the roles (each once), as roles of the by-true-label
    view."""
    seen, secondary = set(), []
    for role in roles:
        for wnid in role.never_predicted:
            if wnid not in seen:
                seen.add(wnid)
                secondary.append(Role(f"{NEVER_PREDICTED} by {role.ranking.run}", wnid, role.ranking))
    return secondary


def role_entry(role, rankings, class_reference):
    """A role as JSON: its class, the run defining it, each run's count of it (that run first),
    the ties in that run (not for a never-predicted class, tied by definition) and the
    never-predicted classes set aside for it. class_reference(wnid): {"wnid", "name"}."""
    ordered = [role.ranking] + [ranking for ranking in rankings if ranking.run != role.ranking.run]
    entry = {"role": role.label, **class_reference(role.wnid), "ranked_by": role.ranking.run,
             "predicted_counts": {ranking.run: int(ranking.counts[role.wnid]) for ranking in ordered}}
    if not role.label.startswith(NEVER_PREDICTED):
        entry["tied_with"] = role.ranking.ties(role.wnid)
    if role.never_predicted:
        entry["never_predicted"] = [class_reference(wnid) for wnid in role.never_predicted]
    return entry


def counts_text(entry):
    """'clip 0 (tied with 2 other classes, broken by class index), debiaspl 57 predictions': each
    run's count of a role's class, the ties after the count of the run ranking it."""
    parts = []
    for run, count in entry["predicted_counts"].items():
        tied = entry.get("tied_with") if run == entry["ranked_by"] else 0
        parts.append(f"{run} {count:,}" + (f" (tied with {plural(tied, 'other class', 'other classes')}"
                                           ", broken by class index)" if tied else ""))
    return ", ".join(parts) + " predictions"


def never_predicted_text(entry):
    """The never-predicted classes set aside for a role, in one sentence, or ''."""
    if not entry.get("never_predicted"):
        return ""
    names = ", ".join(f"{cls['name']} ({cls['wnid']})" for cls in entry["never_predicted"])
    return (f"never predicted by {entry['ranked_by']}, so without a centroid: {names}; "
            "their nearest centroids by true label follow as the secondary view.")
