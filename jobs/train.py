"""Entry point for ``ray job submit``: the training pipeline with the ``ray-adlf train`` flags.

    ray job submit --working-dir . -- python jobs/train.py --run_sft --data_path D --output_dir O

``ray.init()`` connects to the job's cluster (``RAY_ADDRESS``), or starts a local one.
"""

import argparse
import json
import logging

import ray

from ray_adlf.config import add_config_flags, config_from_args
from ray_adlf.train.pipeline import run_pipeline

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_config_flags(parser)
    cfg = config_from_args(parser.parse_args())
    ray.init()
    print(json.dumps(run_pipeline(cfg), indent=2))
