"""The runs a study covers, read once: every analysed run folder under OUT, each training-free
run right after the run it debiased, runs grouped by the dataset they ran on."""
from report.run_folders import RunSet, load_runs


def study_runs(out_dir, commands):
    """({run id: Run} of the analysed runs in study order, [the Runs not analysed yet]). The one
    place the study reads run folders (report.run_folders.load_runs, through runs/loader.py);
    `commands` (cli.commands.Commands) for its notes."""
    runs = load_runs(out_dir, commands)
    analysed = {run_id: run for run_id, run in runs.items() if run.metrics is not None}
    return (RunSet({run_id: analysed[run_id] for run_id in study_order(analysed)}, commands),
            [run for run in runs.values() if run.metrics is None])


def study_order(runs):
    """Run ids by dataset (split and classes: Run.group) in the order the datasets first occur,
    each run followed by the training-free runs made from it."""
    derived = {}
    for run_id, run in runs.items():
        derived.setdefault(run.descriptor["source"] if run.descriptor["source"] in runs else None,
                           []).append(run_id)
    ordered = []

    def place(run_id):
        ordered.append(run_id)
        for child in derived.get(run_id, []):
            place(child)

    groups = list(dict.fromkeys(run.group for run in runs.values()))
    for group in groups:
        for run_id in derived.get(None, []):
            if runs[run_id].group == group:
                place(run_id)
    return ordered
