"""ADLF rewards: internal signals (``signals``), the combiner with multi-objective weighting and
normalisation (``combine``), plugins (``plugins``), the reward model's inputs and metrics
(``reward_model``), and ``scorer.RewardScorer`` which computes every part of a batch.

No Ray here; ``actors/reward.py`` wraps the scorer in Ray actors.
"""
