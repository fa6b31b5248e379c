"""Thin ``@ray.remote`` shells over ``engines/``, ``rewards/`` and ``debate/``.

The only Ray-aware code outside ``train/``, ``tune.py`` and ``cli.py``. Submodules are imported
explicitly (``from ray_adlf.actors.rollout import RolloutPool``) so that importing one kind of
actor never pulls in the others.
"""
