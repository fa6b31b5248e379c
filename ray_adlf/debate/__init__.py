"""Agent debate: prompt templates (``prompts``), the round protocol, score reading and
aggregation (``protocol``), and critics on a local model or an HTTP endpoint (``critics``).

No Ray here; ``actors/critique.py`` wraps critics in Ray actors.
"""
