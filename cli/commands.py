"""The commands the tool suggests, in the user's own folders: the one place `python starter.py`
is spelled. The report, the explorer and the analysis receive a Commands (through their
settings) when they print or write a command; they never build one."""
import shlex
from dataclasses import dataclass

from runs.kinds import REFERENCE_MODEL

SCRIPT = ("python", "starter.py")


def starter_command(*options):
    return shlex.join([*SCRIPT, *map(str, options)])


@dataclass(frozen=True)
class Commands:
    """Commands for one OUT: `where` holds the options of the command at hand that say where its
    data and outputs are (--data, --split, --out when not the defaults)."""
    where: tuple = ()

    def model(self, model, *options):
        """The command that makes `model`'s run."""
        return starter_command("--model", model, *self.where, *options)

    def run(self, run_id, made_by=None, from_cache=False):
        """The command that makes the run folder `run_id` again (its outputs only, from its cache,
        when `from_cache`): the --model that made it, and --run-name when the folder is not named
        by it."""
        made_by = made_by or run_id
        return starter_command("--model", made_by, *(("--from-cache",) if from_cache else ()), *self.where,
                               *(() if made_by == run_id else ("--run-name", run_id)))

    def first_run(self):
        """The command to start with: the homework's first run."""
        return self.model(REFERENCE_MODEL)

    def report(self, *options):
        return starter_command("--report", *self.where, *options)

    def demo(self):
        return starter_command("--demo")


def for_out(out_dir):
    """Commands for an OUT named by its folder alone (--out OUT)."""
    return Commands(("--out", str(out_dir)))
