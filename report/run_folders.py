"""Loading the run folders under OUT that the report is built from (what `starter.py --model ...`
wrote: metrics.json, centroids.json, pseudo_labels.json and the training-free runs' files)."""
from dataclasses import dataclass, field
from pathlib import Path

from runs.outputs import UserError, read_json
from runs.descriptors import REFERENCE_MODEL, find_runs, is_simulated, run_folder_command, starter_command


EXTRA_RUN_FILES = {"clip-la": ("prior.json",), "clip-pm": ("prior.json",)}  # by --model


PSEUDO_LABEL_FILE = "pseudo_labels.json"


@dataclass
class Run:
    """One run folder under OUT (runs.find_runs); metrics is None until the run has been
    analysed. `model` is the run's id, its folder's name."""
    model: str
    directory: Path
    descriptor: dict
    metrics: dict = None
    centroids: dict = None
    pseudo_labels: dict = None  # pseudo_labels.json
    files: dict = field(default_factory=dict)  # EXTRA_RUN_FILES read: {file name: JSON}

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
    def group(self):
        """What the run can be compared with class by class: its dataset, split and classes."""
        classes = tuple(sorted(entry["wnid"] for entry in self.metrics["classes"])) if self.metrics else ()
        return self.descriptor["dataset"], self.descriptor["split"], classes


def load_runs(out_dir):
    """{run id: Run} of every run folder under out_dir, in runs.find_runs' order (the homework's
    first)."""
    out_dir = Path(out_dir)
    runs = {}
    for run_id, descriptor in find_runs(out_dir).items():
        directory = out_dir / run_id
        run = Run(run_id, directory, descriptor)
        for attribute, name in (("metrics", "metrics.json"), ("centroids", "centroids.json"),
                                ("pseudo_labels", PSEUDO_LABEL_FILE)):
            if (directory / name).is_file():
                setattr(run, attribute, read_json(directory / name, f"{run_id}'s {name}"))
        run.files = {name: read_json(directory / name, f"{run_id}'s {name}")
                     for name in EXTRA_RUN_FILES.get(run.made_by, ()) if (directory / name).is_file()}
        runs[run_id] = run
    if not any(run.metrics for run in runs.values()):
        raise UserError(f"{out_dir} holds no analysed run (no folder with metrics.json); run "
                        f"`{starter_command(REFERENCE_MODEL, ('--out', str(out_dir)))}` first.")
    return runs


def extra_models(runs):
    """The runs beyond the homework's questions: training-free runs, other models, other
    datasets."""
    return [run_id for run_id, run in runs.items() if run.question is None]


def run_command(run_id, out_dir, from_cache=False, made_by=None):
    """The command that (re)creates OUT/<run_id>'s outputs; `made_by`, the --model that made it,
    when the folder is not named by it."""
    return run_folder_command(run_id, made_by or run_id,
                              (*(("--from-cache",) if from_cache else ()), "--out", str(out_dir)))
