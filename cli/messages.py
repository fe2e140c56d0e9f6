"""Errors the library raised as data, turned into the one sentence the user reads, with the
command that fixes them in the user's own folders (cli/commands.py)."""
from runs.descriptors import RUN_FILE
from runs.errors import MissingFeatures, MissingRun, NoAnalysedRun, UnusableCache
from runs.kinds import run_kind
from runs.outputs import read_json


def maker_of(run_dir, known=None):
    """The --model that made the run folder `run_dir`: `known` when given, else its run.json's,
    else its name when that is a run kind's; None for a folder no kind is known to make."""
    if known:
        return known
    if (run_dir / RUN_FILE).is_file():
        return read_json(run_dir / RUN_FILE, "the run descriptor")["model"]
    return run_dir.name if run_kind(run_dir.name) else None


def missing_run_fix(error, commands):
    made_by = maker_of(error.path.parent, error.made_by)
    if made_by:
        again = "first" if error.problem == MissingRun.MISSING else "again on this dataset"
        return f"run `{commands.run(error.run_id, made_by)}` {again}"
    if error.others:
        return f"pass {error.choose_with} with one of {', '.join(error.others)}"
    return f"make the run {error.run_id} first"


def unusable_cache_fix(error, commands):
    made_by = maker_of(error.path.parent)
    if not error.rebuildable or not made_by:
        return None
    return f"run `{commands.run(error.run_id, made_by)}` " + ("first" if error.missing else "to rebuild it")


def explain(error, commands):
    """The sentence for a UserError: its own text, and for the typed ones the command that fixes
    it."""
    if isinstance(error, MissingRun):
        fix = missing_run_fix(error, commands)
    elif isinstance(error, UnusableCache):
        fix = unusable_cache_fix(error, commands)
    elif isinstance(error, MissingFeatures):
        made_by = maker_of(error.path.parent, error.made_by)
        fix = f"run `{commands.run(error.run_id, made_by)}` again without --no-features"
    elif isinstance(error, NoAnalysedRun):
        fix = f"run `{commands.first_run()}` first"
    else:
        fix = None
    text = str(error).rstrip(".")
    return f"{text}; {fix}." if fix else f"{text}."
