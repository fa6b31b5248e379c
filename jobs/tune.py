"""Entry point for ``ray job submit``: the Ray Tune search with the ``ray-adlf tune`` flags.

    ray job submit --working-dir . -- python jobs/tune.py --space tune_spaces/adlf_alpha.py \
        --num_samples 8 --scheduler asha --rounds_per_trial 20 --output_dir O

``ray.init()`` connects to the job's cluster (``RAY_ADDRESS``), or starts a local one.
"""

import argparse
import json
import logging

import ray

from ray_adlf.cli import TUNE_OWN_FLAGS, add_tune_flags
from ray_adlf.config import add_config_flags, config_from_args
from ray_adlf.tune import run_tune_from_args

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_tune_flags(parser)
    add_config_flags(parser, exclude=TUNE_OWN_FLAGS)
    args = parser.parse_args()
    ray.init()
    print(json.dumps(run_tune_from_args(args, config_from_args(args)), indent=2, default=str))
