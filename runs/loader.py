"""The one reader of a run folder: its descriptor (run.json), the JSONs its analysis wrote
(metrics, centroids, pseudo-labels, why), the files its kind writes beyond them, and the
explorer's tables, with one freshness check. The report, the study and the explorer all read runs
through it; none reads the logits. stdlib and numpy.
"""
from dataclasses import dataclass, field
from pathlib import Path

from runs.tables import TABLES_FILE, read_tables
from runs.descriptors import find_runs, is_simulated
from runs.kinds import run_kind
from runs.outputs import read_json

METRICS_FILE, CENTROIDS_FILE, PSEUDO_LABEL_FILE, WHY_FILE = (
    "metrics.json", "centroids.json", "pseudo_labels.json", "why.json")
# {attribute: (file, the keys this version writes there)}: a file without them predates this
# version, and its run is outdated until its analysis runs again (--from-cache).
RUN_JSONS = {"metrics": (METRICS_FILE, ("num_images", "accuracy", "balanced_accuracy", "own_order",
                                        "classes", "top_confusions", "class_confusions", "settings")),
             "centroids": (CENTROIDS_FILE, ()),
             "pseudo_labels": (PSEUDO_LABEL_FILE, ("confidence_threshold", "class_balanced_top_k",
                                                   "kept_per_class")),
             "why": (WHY_FILE, ())}


@dataclass
class Run:
    """One run folder under OUT. A JSON the analysis has not written is None; metrics is None
    until the run has been analysed. `model` is the run's id, its folder's name."""
    model: str
    directory: Path
    descriptor: dict
    metrics: dict = None
    centroids: dict = None
    pseudo_labels: dict = None
    why: dict = None
    files: dict = field(default_factory=dict)  # its kind's extra_files read: {file name: JSON}
    outdated: tuple = ()  # the files that are missing or predate this version
    remake: str = ""  # the command that remakes its outputs from its cache (set by the CLI's caller)

    @property
    def title(self):
        return self.descriptor["title"]

    @property
    def made_by(self):
        """The --model that made it."""
        return self.descriptor["model"]

    @property
    def question(self):
        """Q1 or Q2 for the homework's runs, else None."""
        return self.descriptor["question"]

    @property
    def simulated(self):
        return self.metrics is not None and is_simulated(self.metrics.get("settings", {}))

    @property
    def analysed(self):
        return self.metrics is not None

    @property
    def current(self):
        """Analysed by this version: every file there, with every key this version writes."""
        return self.analysed and not self.outdated

    @property
    def group(self):
        """What the run can be compared with class by class: its dataset, split and classes."""
        classes = tuple(sorted(entry["wnid"] for entry in self.metrics["classes"])) if self.metrics else ()
        return self.descriptor["dataset"], self.descriptor["split"], classes

    def tables(self):
        """The explorer's tables (analysis/explorer_tables.py), read when asked: they are
        arrays, and only the explorer wants them."""
        return read_tables(self.directory / TABLES_FILE)


def load_run(directory, descriptor):
    """The Run of one folder, as far as its files go."""
    directory = Path(directory)
    run = Run(directory.name, directory, descriptor)
    outdated = []
    for attribute, (name, keys) in RUN_JSONS.items():
        path = directory / name
        content = read_json(path, f"{directory.name}'s {name}") if path.is_file() else None
        setattr(run, attribute, content)
        if content is None or not all(key in content for key in keys):
            outdated.append(name)
    if not (directory / TABLES_FILE).is_file():
        outdated.append(TABLES_FILE)
    kind = run_kind(run.made_by)
    run.files = {name: read_json(directory / name, f"{directory.name}'s {name}")
                 for name in (kind.extra_files if kind else ()) if (directory / name).is_file()}
    run.outdated = tuple(outdated)
    return run


def load_runs(out_dir):
    """{run id: Run} of every run folder under out_dir, in runs.find_runs' order (the homework's
    first)."""
    out_dir = Path(out_dir)
    return {run_id: load_run(out_dir / run_id, descriptor) for run_id, descriptor in find_runs(out_dir).items()}
