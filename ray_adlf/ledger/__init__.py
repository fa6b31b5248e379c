"""The rollout ledger: one row per sample per recorded RL round, every reward part beside it.

``schema`` names the columns, ``store`` writes and reads ``O/rollouts/round-NNNNNN.parquet``,
``analysis`` computes per-round statistics, correlations and reward-hacking signs (pure
functions of a ``pyarrow.Table``), and ``terminal``, ``plots`` and ``page`` present them for
``ray-adlf inspect`` (console, PNG, static HTML).
"""
