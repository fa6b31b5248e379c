"""``ray-adlf demo``: the whole pipeline on the bundled tiny model and sample, offline, on CPU.

SFT (2 Ray Train workers), the reward model and an evaluation reward model (on disjoint halves
of the training records), then RLHF with ADLF rewards: the reward model's score, and fluency,
coherence (MiniLM), faithfulness, a length penalty and a two-critic debate as internal
signals. Before round 1 and after the last round the policy is evaluated on held-out prompts
(the evaluation reward model's score of greedy responses, and the KL to the SFT policy); the
last lines say what RLHF changed, with standard errors. It starts a local Ray (or joins the one
``RAY_ADDRESS`` names) and writes everything into ``--output_dir``.
"""

from __future__ import annotations

import logging
from typing import Any

from ray_adlf.config import Config, validate
from ray_adlf.train.pipeline import evaluation_lines

log = logging.getLogger("ray_adlf.demo")


def demo_config(output_dir: str) -> Config:
    """The demo's config: tiny model, bundled sample, every stage on, sized for 2 CPUs."""
    cfg = Config()
    cfg.data.data_path = "sample"
    cfg.data.max_seq_length = 128
    cfg.model.model_name = "tiny"
    cfg.sft.run_sft = True
    cfg.sft.sft_epochs = 3
    cfg.sft.sft_batch_size = 16
    cfg.sft.sft_learning_rate = 1e-3
    cfg.reward_model.run_reward_model = True
    cfg.reward_model.rm_epochs = 3
    cfg.reward_model.rm_learning_rate = 5e-4
    cfg.rollout.rollout_engine = "hf"  # no vLLM start-up (30-60 s on CPU) for a short run
    cfg.rollout.max_new_tokens = 24
    cfg.rewards.adlf_alpha = 0.3
    cfg.rewards.use_coherence_reward = True
    cfg.rewards.use_faithfulness_reward = True
    cfg.rewards.use_length_penalty = True
    cfg.rewards.use_debate_reward = True
    cfg.debate.num_critics = 2
    cfg.debate.debate_rounds = 2
    cfg.ppo.run_rlhf = True
    cfg.ppo.rl_rounds = 20
    cfg.ppo.advantage = "rloo"
    cfg.ppo.num_samples_per_prompt = 4
    cfg.ppo.ppo_batch_size = 8
    cfg.ppo.ppo_minibatch_size = 16
    cfg.ppo.ppo_learning_rate = 5e-4
    cfg.ppo.eval_every = 20
    cfg.ppo.eval_prompts = 40
    cfg.run.output_dir = output_dir
    cfg.resources.num_workers = 2
    return validate(cfg)


def print_outcome(summary: dict[str, Any]) -> None:
    """The demo's last lines: the before/after evaluation and where the report is."""
    for line in evaluation_lines(summary.get("rlhf", {})):
        log.info(line)
