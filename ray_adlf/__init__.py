"""ray_adlf: fine-tune language models from scored conversation logs on Ray.

Stages: SFT, a reward model learned from human scores, and RLHF with ADLF rewards
(``reward = (1 - alpha) * external + alpha * internal``). Importing this package pulls in
neither Ray nor vLLM; those live in ``actors/``, ``train/``, ``tune.py`` and ``cli.py``.
"""

__version__ = "0.1.0"
