"""``ray-adlf demo``: the whole pipeline on the bundled tiny model and sample, offline, on CPU.

SFT (2 Ray Train workers), the reward model, then RLHF with ADLF rewards: the reward model's
score, and fluency, coherence (MiniLM), faithfulness, a length penalty and a two-critic debate
as internal signals. It starts a local Ray (or joins the one ``RAY_ADDRESS`` names), writes
everything into ``--output_dir`` and prints where the report is. A few minutes on 2 cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray_adlf.config import Config, validate


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
    cfg.rollout.rollout_engine = "hf"  # no vLLM start-up (30-60 s on CPU) for 16 short rounds
    cfg.rollout.rollout_num_cpus = 0.25
    cfg.rollout.max_new_tokens = 24
    cfg.rewards.adlf_alpha = 0.3
    cfg.rewards.use_coherence_reward = True
    cfg.rewards.use_faithfulness_reward = True
    cfg.rewards.use_length_penalty = True
    cfg.rewards.use_debate_reward = True
    cfg.rewards.reward_num_cpus = 0.25
    cfg.debate.num_critics = 2
    cfg.debate.debate_rounds = 2
    cfg.debate.critic_num_cpus = 0.1
    cfg.ppo.run_rlhf = True
    cfg.ppo.rl_rounds = 16
    cfg.ppo.ppo_batch_size = 16
    cfg.ppo.ppo_learning_rate = 1e-4
    cfg.run.output_dir = output_dir
    cfg.run.num_workers = 2
    return validate(cfg)


def run_demo(output_dir: str) -> dict[str, Any]:
    """Run the demo into ``output_dir``; return the pipeline summary."""
    from ray_adlf.train.pipeline import run_pipeline

    summary = run_pipeline(demo_config(output_dir))
    print(f"\ndemo finished: final policy in {Path(summary['output_dir'])}")
    print(f"run report: {summary['report']}")
    return summary
