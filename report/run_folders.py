"""The run folders under OUT that the report is built from, read by the one loader
(runs/loader.py), with the commands its notes give."""
from pathlib import Path

from runs import loader
from runs.errors import NoAnalysedRun


class RunSet(dict):
    """{run id: Run}, and the commands (cli.commands.Commands for OUT) that the report's notes
    give: the report never spells a command itself."""

    def __init__(self, runs, commands):
        super().__init__(runs)
        self.commands = commands

    def command(self, run_id, from_cache=False):
        """The command that (re)creates OUT/<run_id>'s outputs: the --model that made it (its
        run.json's, else the folder's name), --from-cache when asked."""
        run = self.get(run_id)
        return self.commands.run(run_id, run.made_by if run else run_id, from_cache)


def load_runs(out_dir, commands):
    """RunSet of every run folder under out_dir, in runs.find_runs' order (the homework's
    first); NoAnalysedRun when none has been analysed."""
    runs = loader.load_runs(out_dir)
    if not any(run.analysed for run in runs.values()):
        raise NoAnalysedRun(Path(out_dir), "the report")
    for run_id, run in runs.items():
        run.remake = commands.run(run_id, run.made_by, from_cache=True)
    return RunSet(runs, commands)


def extra_models(runs):
    """The runs beyond the homework's questions: training-free runs, other models, other
    datasets."""
    return [run_id for run_id, run in runs.items() if run.question is None]
