"""Which stages a ``ray-adlf train`` command runs, decided before anything starts (no I/O but
looking for finished outputs of earlier runs).

- No stage flag (``--run_sft``, ``--run_reward_model``, ``--run_rlhf``) at all: the whole
  pipeline, SFT -> reward model -> RLHF.
- ``--run_rlhf`` with ``--adlf_alpha < 1`` needs a model of the human score (the external
  reward, the only one a new response can get): ``--reward_model_path``, else a finished
  ``<output_dir>/reward_model`` of an earlier run, else the reward model is trained on the same
  data first.
- ``--eval_every`` (held-out evaluation of the policy) needs an evaluation reward model that
  the policy was not trained against: ``--eval_reward_model_path``, else a finished
  ``<output_dir>/eval_reward_model``, else it is trained alongside the reward model on the
  other half of the training records (so the reward model stage runs too, or is an error when
  the reward model comes from ``--reward_model_path``: then the halves cannot be kept apart).

A stage's output counts as finished only when its completion marker (``COMPLETE_MARKER``,
written after everything else) is there. Each decision the user did not spell out becomes one
line of ``StagePlan.notes``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ray_adlf.config import Config, ConfigError

SFT, REWARD_MODEL, EVAL_REWARD_MODEL, RLHF = "sft", "reward_model", "eval_reward_model", "rlhf"
COMPLETE_MARKER = ".ray_adlf_complete"
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class StagePlan:
    """The stages to run, in order, and why (one note per decision)."""

    run: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rl_policy_needs_format(self) -> bool:
        """True when RLHF starts from ``--model_name`` as it is (no SFT output to start from)."""
        return RLHF in self.run and SFT not in self.run


def finished_output(cfg: Config, stage: str) -> str | None:
    """``<output_dir>/<stage>`` when a finished stage output is there."""
    path = Path(cfg.run.output_dir) / stage
    return str(path) if (path / COMPLETE_MARKER).is_file() else None


def plan_stages(cfg: Config) -> StagePlan:
    """The stages of ``cfg`` (module docstring); ConfigError for a need nothing can meet."""
    plan = StagePlan()
    sft, rm, rlhf = cfg.sft.run_sft, cfg.reward_model.run_reward_model, cfg.ppo.run_rlhf
    if not (sft or rm or rlhf):
        sft = rm = rlhf = True
        plan.notes.append("no stage flag: running the whole pipeline, SFT -> reward model -> RLHF")
    given_rm = cfg.reward_model.reward_model_path
    if rlhf and cfg.rewards.adlf_alpha < 1 and not (rm or given_rm):
        if finished_output(cfg, REWARD_MODEL):
            plan.notes.append(
                f"RLHF reuses the reward model in {finished_output(cfg, REWARD_MODEL)}"
            )
        else:
            rm = True
            plan.notes.append(
                f"--adlf_alpha {cfg.rewards.adlf_alpha:g} < 1 needs a reward model of the human "
                "score: training it on the same data first (--run_reward_model)"
            )
    eval_rm = False
    needs_eval_model = rlhf and cfg.ppo.eval_every > 0 and not cfg.ppo.eval_reward_model_path
    if needs_eval_model and (rm or not finished_output(cfg, EVAL_REWARD_MODEL)):
        if given_rm and not rm:
            raise ConfigError(
                "--eval_every: needs --eval_reward_model_path (a reward model trained on data "
                "disjoint from --reward_model_path's), or --run_reward_model to train both"
            )
        rm = eval_rm = True
        plan.notes.append(
            "--eval_every: training an evaluation reward model on the half of the training "
            "records the reward model does not see"
        )
    plan.run = [
        stage
        for stage, on in (
            (SFT, sft),
            (REWARD_MODEL, rm),
            (EVAL_REWARD_MODEL, eval_rm),
            (RLHF, rlhf),
        )
        if on
    ]
    return plan


class StageFailed(RuntimeError):
    """A stage raised while it ran; ``cause`` is the original error."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{stage} stage failed: {root_cause(cause)}")
        self.stage, self.cause = stage, cause


def root_cause(error: BaseException) -> str:
    """``Type: first line`` of the innermost error (Ray wraps worker errors in several layers),
    without the terminal colour codes Ray puts in its messages."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = getattr(error, "cause", None) or error.__cause__
        if isinstance(inner, BaseException):
            error = inner
            continue
        failures = getattr(error, "worker_failures", None)
        if isinstance(failures, dict) and failures:
            error = next(iter(failures.values()))
            continue
        break
    text = _TERMINAL_CODES.sub("", str(error))
    lines = [line for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else 'no message'}"
