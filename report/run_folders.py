"""Loading the run folders under OUT that the report is built from (what `starter.py --model ...`
wrote: metrics.json, centroids.json, pseudo_labels.json and the training-free runs' files)."""
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from outputs import UserError, read_json
from runs import MODEL_TITLES, QUESTION_OF_MODEL, is_simulated


RUN_MODELS = tuple(MODEL_TITLES)  # report order: the homework's runs, then the training-free ones


EXTRA_RUN_FILES = {"clip-la": ("prior.json",), "clip-pm": ("prior.json",)}


PSEUDO_LABEL_FILE = "pseudo_labels.json"


@dataclass
class Run:
    """One OUT/<model> folder; metrics is None until the run has been analysed."""
    model: str
    directory: Path
    metrics: dict = None
    centroids: dict = None
    pseudo_labels: dict = None  # pseudo_labels.json
    files: dict = field(default_factory=dict)  # EXTRA_RUN_FILES read: {file name: JSON}

    @property
    def title(self):
        return MODEL_TITLES.get(self.model, self.model)

    @property
    def simulated(self):
        return self.metrics is not None and is_simulated(self.metrics.get("settings", {}))


def load_runs(out_dir):
    """{model: Run} for every folder among RUN_MODELS that exists under out_dir, in that order."""
    out_dir = Path(out_dir)
    runs = {}
    for model in RUN_MODELS:
        directory = out_dir / model
        if not directory.is_dir():
            continue
        run = Run(model, directory)
        for attribute, name in (("metrics", "metrics.json"), ("centroids", "centroids.json"),
                                ("pseudo_labels", PSEUDO_LABEL_FILE)):
            if (directory / name).is_file():
                setattr(run, attribute, read_json(directory / name, f"{model}'s {name}"))
        run.files = {name: read_json(directory / name, f"{model}'s {name}")
                     for name in EXTRA_RUN_FILES.get(model, ()) if (directory / name).is_file()}
        runs[model] = run
    if not any(run.metrics for run in runs.values()):
        raise UserError(f"{out_dir} holds no analysed run (none of "
                        f"{', '.join(m + '/metrics.json' for m in RUN_MODELS)}); run "
                        f"`python starter.py --model clip --out {shlex.quote(str(out_dir))}` first.")
    return runs


def extra_models(runs):
    """The training-free runs present: those beyond the homework's questions."""
    return [model for model in runs if model not in QUESTION_OF_MODEL]


def run_command(model, out_dir, from_cache=False):
    """The command that (re)creates OUT/<model>'s outputs."""
    return (f"python starter.py --model {model}" + (" --from-cache" if from_cache else "")
            + f" --out {shlex.quote(str(out_dir))}")
