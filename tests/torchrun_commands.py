"""Run by the tests under torchrun: several starter.py command lines (argv[1], a JSON list of
argument lists), one after another in each process of one job, so that the job's start
(torchrun's agent, and each process's imports of torch and open_clip: ~15 CPU-s here) is paid once
for all of them. The runs share the job's process group, which the first joins: a group left and
joined again in one process may read the old group's rendezvous keys from torchrun's store, and
hang. After each run the main process prints END_OF_RUN and the run's exit code; the job exits 1
if a run failed."""
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import starter  # noqa: E402
from inference import distributed  # noqa: E402

END_OF_RUN = "=== torchrun_commands: end of run, exit code "


def main(runs):
    codes = []
    for argv in runs:
        codes.append(starter.main(argv))
        if os.environ.get("RANK", "0") == "0":
            print(f"{END_OF_RUN}{codes[-1]}", flush=True)
    return int(any(codes))


if __name__ == "__main__":  # the figure workers, spawned, import this file again
    distributed.stop = lambda place: None  # the group is left as the process ends
    sys.exit(main(json.loads(sys.argv[1])))
