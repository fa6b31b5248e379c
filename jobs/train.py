"""Entry point for ``ray job submit``: ``ray-adlf train`` with the same flags.

    ray job submit --working-dir . -- python jobs/train.py --run_sft --data_path D --output_dir O

Inside a job, Ray connects to the job's cluster (``RAY_ADDRESS``); run by hand, it starts a
local one. Checks, console and exit codes are the CLI's (``ray_adlf/cli.py``).
"""

import sys

from ray_adlf.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
