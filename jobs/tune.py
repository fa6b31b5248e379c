"""Entry point for ``ray job submit``: ``ray-adlf tune`` with the same flags.

    ray job submit --working-dir . -- python jobs/tune.py --space tune_spaces/adlf_alpha.py \
        --num_samples 8 --scheduler asha --rounds_per_trial 20 --output_dir O

Inside a job, Ray connects to the job's cluster (``RAY_ADDRESS``); run by hand, it starts a
local one. Checks, console and exit codes are the CLI's (``ray_adlf/cli.py``).
"""

import sys

from ray_adlf.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
