"""The errors a user can fix that need a command to fix them, as data: which run, where, needed by
what. The library raises them; only the CLI (cli/messages.py) turns one into a sentence with the
command in the user's own folders. Each also reads as a sentence without the command. stdlib only.
"""
from pathlib import Path

from runs.outputs import UserError


class MissingRun(UserError):
    """A run that another step needs is not in OUT (no cache, or not analysed yet).

    run_id: the folder needed; made_by: the --model that makes it, None when unknown (a brought
    cache, a folder of another name); needed_by: the --model or step that needs it; purpose:
    what for, in words; path: the file that is missing or unusable; problem: what is wrong with
    it ("does not exist", or why it cannot serve, when remaking the run on this dataset fixes
    it); others: runs in OUT that could stand in, through the option `choose_with`."""

    MISSING = "does not exist"

    def __init__(self, run_id, made_by, needed_by, purpose, path, others=(), problem=MISSING,
                 choose_with="--source"):
        self.run_id, self.made_by, self.needed_by, self.choose_with = run_id, made_by, needed_by, choose_with
        self.purpose, self.path, self.others, self.problem = purpose, Path(path), tuple(others), problem
        super().__init__(f"{needed_by} needs the run {run_id} to {purpose}, but {self.path} "
                         f"{problem}")


class UnusableCache(UserError):
    """A cache that is missing, damaged or lacks what this tool wrote in it.

    problem: what is wrong, in words; rebuildable: this tool wrote it (a meta), so remaking its
    run fixes it (else the problem names the key to fix)."""

    def __init__(self, path, problem, rebuildable):
        self.path, self.problem, self.rebuildable = Path(path), problem, rebuildable
        self.missing = not self.path.is_file()
        super().__init__(problem)

    @property
    def run_id(self):
        return self.path.parent.name


class MissingFeatures(UserError):
    """A step needs CLIP's image features, and the run's cache has none (made with
    --no-features, or another tool's)."""

    def __init__(self, run_id, made_by, needed_by, path):
        self.run_id, self.made_by, self.needed_by, self.path = run_id, made_by, needed_by, Path(path)
        super().__init__(f"{needed_by} needs the image features of a CLIP run, and {self.path} has "
                         "none")


class NoAnalysedRun(UserError):
    """OUT holds no run with metrics.json, for the report, the study or the explorer."""

    def __init__(self, out_dir, wanted_by):
        self.out_dir, self.wanted_by = Path(out_dir), wanted_by
        super().__init__(f"{self.out_dir} holds no analysed run (no folder with metrics.json) for "
                         f"{wanted_by}")
