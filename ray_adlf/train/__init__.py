"""Training stages on Ray Train: SFT now (``sft.py``), then the reward model and RLHF.

``pipeline.run_pipeline(cfg)`` runs the selected stages in order; ``common.py`` holds what the
stages share (trainer construction, run names and resume, final model outputs).
"""
