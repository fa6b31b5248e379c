"""Generation engines behind one small protocol (``base.Engine``): vLLM and plain transformers.

Plain Python, no Ray. Importing this package imports neither vLLM nor Ray; ``select.build_engine``
imports the chosen engine's module only when it builds one.
"""

from ray_adlf.engines.base import Engine, GenerationBatch, SamplingParams, ShardTiming
from ray_adlf.engines.select import build_engine, choose_engine
from ray_adlf.engines.weights import PackedWeights, pack_state_dict, unpack_state_dict

__all__ = [
    "Engine",
    "GenerationBatch",
    "PackedWeights",
    "SamplingParams",
    "ShardTiming",
    "build_engine",
    "choose_engine",
    "pack_state_dict",
    "unpack_state_dict",
]
