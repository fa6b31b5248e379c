"""The RL learner on one Ray Train rank: everything it trains and everything a checkpoint holds.

``RLLearner`` owns the trainable module (the policy, with a value head for ``gae``), AdamW,
the learning-rate schedule, the KL controller, the prompt stream, the ADLF reward combiner,
the critics' call count (their sampling seeds) and, on rank 0, the colocated reference model
(with ``--use_lora`` none: the reference is the policy with its adapter disabled).
``train(shard, round_index, pad_id)`` is the learner's half of a round; ``save(directory)``
and ``load`` are one call each: the policy in Hugging Face layout under ``policy/``, the rest
as data (``learner_state``); with ``--use_lora`` ``policy/`` holds the adapter (PEFT layout).
``--learner_strategy fsdp`` shards the module over the ranks
(``train.sharding``): the model and optimizer shards then travel in ``sharded/`` and
``weights_to_sync`` gathers the full weights into rank 0, every rank taking part.

Passes a round makes over the shard:

- reference logprobs: none here; rank 0 ran the round's one reference pass over every row
  (``reference_logprobs``, or the reference actor) before the rewards, for the KL and the
  fluency signal alike, and the rows arrive with the shard;
- old logprobs (and values): one forward under the current weights, except with one epoch of
  one minibatch, where the update's own forward is the old policy (``experience``); either way
  the learner's old policy, never the engine's logprobs, gives the KL and the ratio, and the
  TIS weights (``--tis_cap``) correct for the engine (its lag under ``--async_rollout``, its
  numerics always);
- the PPO update (``ppo_learner.ppo_update``).

Every row carries the policy version that sampled it; ``train`` refuses a shard with a row more
than ``--max_staleness`` versions behind the learner (0 without ``--async_rollout``).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from ray_adlf.algo import AdaptiveKLController, FixedKLController
from ray_adlf.config import Config, uses_reference
from ray_adlf.data.rl_prompts import PromptStream, prompt_order
from ray_adlf.models.loading import load_causal_lm
from ray_adlf.models.lora import adapter_state_dict, add_lora, load_adapter_state, lora_settings
from ray_adlf.models.policy import PolicyWithValue, pack_sequences, response_forward
from ray_adlf.train.common import precision
from ray_adlf.train.experience import make_experience, sample_statistics
from ray_adlf.train.learner_state import load_learner_state, save_learner_state
from ray_adlf.train.ppo_learner import ppo_update
from ray_adlf.train.ppo_settings import PPOSettings
from ray_adlf.train.rank_stats import global_masked_mean, global_max, global_row_mean
from ray_adlf.train.rollout_batch import Rollout
from ray_adlf.train.sharding import full_state_dict, load_sharded, save_sharded, shard_module


def kl_controller(cfg: Config) -> FixedKLController | AdaptiveKLController:
    """Fixed beta, or Ziegler et al.'s adaptive rule toward ``--kl_target``."""
    if cfg.ppo.use_dynamic_kl:
        return AdaptiveKLController(cfg.ppo.init_kl_coef, cfg.ppo.kl_target, cfg.ppo.kl_horizon)
    return FixedKLController(cfg.ppo.init_kl_coef)


def max_lag(cfg: Config) -> int:
    """The most policy versions a trained sample may lag the learner."""
    return cfg.ppo.max_staleness if cfg.ppo.async_rollout else 0


def ppo_settings(cfg: Config, beta: float, num_minibatches: int) -> PPOSettings:
    """The round's ``PPOSettings`` from ``--flags`` and the KL controller's ``beta``."""
    ppo = cfg.ppo
    return PPOSettings(
        temperature=cfg.rollout.temperature,
        beta=beta,
        kl_estimator=ppo.kl_estimator,
        kl_in_loss=ppo.kl_in_loss,
        advantage=ppo.advantage,
        gamma=ppo.gamma,
        lam=ppo.lam,
        group_size=ppo.num_samples_per_prompt,
        group_std_normalize=ppo.group_std_normalize,
        epochs=ppo.ppo_epochs,
        num_minibatches=num_minibatches,
        policy_loss=ppo.policy_loss,
        clip_eps=ppo.clip_eps,
        clip_eps_high=ppo.clip_eps_high,
        dual_clip=ppo.dual_clip,
        loss_agg=ppo.loss_agg,
        max_new_tokens=cfg.rollout.max_new_tokens,
        tis_cap=ppo.tis_cap,
        vf_coef=ppo.vf_coef,
        value_clip_eps=ppo.value_clip_eps,
        entropy_coef=ppo.entropy_coef,
        max_grad_norm=ppo.ppo_max_grad_norm,
        precision=precision(cfg),
    )


def build_module(cfg: Config, policy_path: str) -> torch.nn.Module:
    """The trainable module: PolicyWithValue for ``gae``, the bare policy for group baselines;
    with ``--use_lora`` the policy carries a fresh adapter (base frozen)."""
    policy = load_causal_lm(policy_path, cfg.model.trust_remote_code)
    lora = lora_settings(cfg.model)
    if lora is not None:
        policy = add_lora(policy, lora, "CAUSAL_LM")
    if cfg.ppo.advantage != "gae":
        return policy
    critic = None
    if cfg.ppo.critic_mode == "separate":
        critic = load_causal_lm(policy_path, cfg.model.trust_remote_code)
    return PolicyWithValue(policy, critic)


class RLLearner:
    """One rank's learner (module docstring). ``world`` ranks split each round's rows;
    ``module`` is the bare module, ``model`` the same wrapped for DDP after ``prepare``."""

    def __init__(
        self, cfg: Config, policy_path: str, prompts: list, world: int, rank: int, device
    ) -> None:
        ppo = cfg.ppo
        self.cfg, self.device, self.rank = cfg, device, rank
        self.sharded = cfg.resources.learner_strategy == "fsdp"
        # Dropout off (eval mode; gradients still flow): the old policy, the update's forward
        # and the engine must compute the same logprobs, as in TRL's PPO.
        self.module = build_module(cfg, policy_path).eval()
        self.lora, self.precision = cfg.model.use_lora, precision(cfg)
        rows = ppo.ppo_batch_size * ppo.num_samples_per_prompt
        self.num_minibatches = max(1, min(rows // world, rows // ppo.ppo_minibatch_size))
        self._make_optimizer()
        self.scaler = torch.amp.GradScaler(device.type) if self.precision == "fp16" else None
        self.reference = None
        self.has_reference = (
            rank == 0 and ppo.reference_placement == "colocated" and uses_reference(cfg)
        )
        if self.has_reference and not self.lora:
            self.reference = load_causal_lm(policy_path, cfg.model.trust_remote_code)
            self.reference.eval().requires_grad_(False).to(device)
        data = cfg.data
        order = prompt_order(
            prompts,
            ppo.ppo_batch_size,
            cfg.run.seed,
            data.use_curriculum,
            data.curriculum_start_fraction,
            data.curriculum_pacing,
            data.curriculum_score_weight,
        )
        self.stream = PromptStream(order, ppo.ppo_batch_size)
        self.controller = kl_controller(cfg)
        from ray_adlf.rewards.scorer import make_combiner

        self.combiner = make_combiner(cfg.rewards)
        self.round, self.critic_calls = 0, 0
        self.eval_baseline: list[float] | None = None
        self.in_flight: list[dict[str, Any]] = []  # rank 0: rollouts made for later rounds
        self.model: torch.nn.Module = self.module

    def _make_optimizer(self) -> None:
        """AdamW over the trainable parameters and its schedule (again after sharding, which
        replaces the parameters)."""
        from transformers import get_scheduler

        ppo = self.cfg.ppo
        trainable = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=ppo.ppo_learning_rate, weight_decay=0.0)
        self.scheduler = get_scheduler(
            ppo.ppo_lr_schedule,
            self.optimizer,
            num_warmup_steps=0,
            num_training_steps=ppo.rl_rounds * ppo.ppo_epochs * self.num_minibatches,
        )

    @property
    def policy(self) -> torch.nn.Module:
        """The causal LM inside the module."""
        return self.module.policy if isinstance(self.module, PolicyWithValue) else self.module

    def prepare(self) -> None:
        """Move to the device and wrap for DDP (Ray Train's ``prepare_model``), or shard with
        FSDP2 (``train.sharding``)."""
        if self.sharded:
            self.model = shard_module(self.module, self.device)
            self._make_optimizer()
            return
        from ray.train.torch import prepare_model

        ppo = self.cfg.ppo
        unused = ppo.advantage == "gae" and ppo.critic_mode == "separate"
        self.model = prepare_model(
            self.module, parallel_strategy_kwargs={"find_unused_parameters": unused}
        )

    @torch.no_grad()
    def reference_logprobs(
        self, prompt_ids: list[list[int]], response_ids: list[list[int]], pad_id: int
    ) -> list[list[float]]:
        """The colocated reference's logprobs of every response token (rank 0), one list per
        row, in one forward: the reference copy, or with LoRA the policy with its adapter
        disabled."""
        batch = pack_sequences(prompt_ids, response_ids, pad_id)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        temperature = self.cfg.rollout.temperature
        # The policy's precision, so that the KL compares like with like.
        autocast = PPOSettings(precision=self.precision).autocast(self.device)
        if self.lora:
            with self.policy.disable_adapter(), autocast:
                out = response_forward(self.policy, batch, temperature, False)
        else:
            with autocast:
                out = response_forward(self.reference, batch, temperature, False)
        logprobs = out["logprobs"].cpu()
        return [logprobs[i, : len(r)].tolist() for i, r in enumerate(response_ids)]

    def train(
        self, shard: Rollout, round_index: int, pad_id: int
    ) -> tuple[dict[str, float], dict[str, list]]:
        """Experience and PPO updates on this rank's shard; the KL controller steps. Returns the
        update statistics with ``kl`` (mean sequence KL, absent without a reference),
        ``logprob_mismatch`` (mean |engine - learner| old logprob) and, with TIS, ``tis/mean``,
        ``tis/max`` and ``tis/truncated_fraction`` (the share of tokens at the cap), all over
        every rank; and the shard's rows' ``experience.sample_statistics``."""
        cfg, ppo = self.cfg, self.cfg.ppo
        lags = [self.round - version for version in shard.policy_versions]
        if max(lags, default=0) > max_lag(cfg) or min(lags, default=0) < 0:
            raise RuntimeError(
                f"round {round_index}: samples of policy versions {sorted(set(shard.policy_versions))} "
                f"reached the learner at version {self.round}, beyond --max_staleness "
                f"{max_lag(cfg)}"
            )
        batch = shard.tensors(pad_id, self.device)
        ref_logprobs = batch.get("ref_logprobs")
        settings = ppo_settings(cfg, self.controller.beta, self.num_minibatches)
        defer = ppo.ppo_epochs == 1 and self.num_minibatches == 1
        experience = make_experience(
            self.model, ref_logprobs, batch, batch["scores"], settings, defer=defer
        )
        generator = torch.Generator().manual_seed(cfg.run.seed * 100_003 + round_index)
        stats = ppo_update(
            self.model, self.optimizer, self.scheduler, experience, settings, generator, self.scaler
        )
        mask = experience.mask
        stats["beta"] = settings.beta
        stats["logprob_mismatch"] = global_masked_mean(
            (batch["engine_logprobs"] - experience.old_logprobs).abs(), mask
        )
        if experience.is_weights is not None:
            weights = experience.is_weights
            stats["tis/mean"] = global_masked_mean(weights, mask)
            stats["tis/max"] = global_max(weights)
            stats["tis/truncated_fraction"] = global_masked_mean(
                (weights >= settings.tis_cap).float(), mask
            )
        if ref_logprobs is not None:
            stats["kl"] = global_row_mean(experience.kl.sum(dim=1))
            rows = ppo.ppo_batch_size * ppo.num_samples_per_prompt
            self.controller.update(stats["kl"], rows)
        self.round = round_index
        return stats, sample_statistics(experience, ref_logprobs is not None)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the policy weights: data only (``learner_state``)."""
        kind, keys, position, has_gauss, cached = np.random.get_state()
        extra, optimizer = {}, {}  # sharded: both travel in the sharded checkpoint
        if not self.sharded:
            optimizer = self.optimizer.state_dict()
            if isinstance(self.module, PolicyWithValue):
                extra = {
                    k: v for k, v in self.module.state_dict().items() if not k.startswith("policy.")
                }
        return {
            "round": self.round,
            "stream": self.stream.state_dict(),
            "kl_controller": self.controller.state_dict(),
            "combiner": self.combiner.state_dict(),
            "critic_calls": self.critic_calls,
            "eval_baseline": self.eval_baseline,
            "in_flight": self.in_flight,
            "learner_extra": extra,
            "optimizer": optimizer,
            "scheduler": self.scheduler.state_dict(),
            "grad_scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "numpy": [kind, keys, position, has_gauss, cached],
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``'s values (after ``prepare``: optimizer state follows the
        parameters' device)."""
        if not self.sharded:
            if isinstance(self.module, PolicyWithValue):
                self.module.load_state_dict(state["learner_extra"], strict=False)
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        self.stream.load_state_dict(state["stream"])
        self.controller.load_state_dict(state["kl_controller"])
        self.combiner.load_state_dict(state["combiner"])
        self.round, self.critic_calls = state["round"], state["critic_calls"]
        self.eval_baseline = state["eval_baseline"]
        self.in_flight = state["in_flight"]
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        kind, keys, position, has_gauss, cached = state["rng"]["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))

    def weights_to_sync(self) -> dict[str, torch.Tensor]:
        """What the engines need, on rank 0 (``{}`` on the others): the policy's state dict, or
        with LoRA its adapter alone. Every rank calls it: sharded, it is a gather into rank 0."""
        if self.sharded:
            full = full_state_dict(self.policy)  # the policy's parameters only
        if self.rank != 0:
            return {}
        if self.sharded:
            return full
        return adapter_state_dict(self.policy) if self.lora else self.policy.state_dict()

    def save(
        self, directory: Path, tokenizer, extra: dict[str, Any], weights: dict[str, torch.Tensor]
    ) -> bool:
        """A checkpoint: ``policy/`` (HF layout from ``weights``, this round's
        ``weights_to_sync``; with LoRA the adapter's PEFT layout; with the tokenizer) and the
        learner state, with ``extra`` (the W&B run id) beside it, from rank 0; sharded, every
        rank's shards of model and optimizer too. Every rank calls it; returns whether this
        rank wrote files (to report)."""
        if self.sharded:
            save_sharded(directory, self.module, self.optimizer)
        if self.rank != 0:
            return self.sharded
        if self.lora:
            self.policy.save_pretrained(directory / "policy")
        else:
            # a copy: save_pretrained drops tied names (lm_head.weight) from the dict it is
            # given, and ``weights`` still goes to the engines, which load every name
            self.policy.save_pretrained(directory / "policy", state_dict=dict(weights))
        tokenizer.save_pretrained(directory / "policy")
        save_learner_state(directory, {**self.state_dict(), **extra})
        return True

    def load(self, directory: Path) -> dict[str, Any]:
        """Restore a ``save``d checkpoint (every rank, after ``prepare``); returns the state."""
        policy_dir = directory / "policy"
        if self.sharded:
            load_sharded(directory, self.module, self.optimizer)
        elif self.lora:
            load_adapter_state(self.policy, load_file(policy_dir / "adapter_model.safetensors"))
        else:
            saved = load_causal_lm(str(policy_dir), self.cfg.model.trust_remote_code)
            self.policy.load_state_dict(saved.state_dict())
        state = load_learner_state(directory)
        self.load_state_dict(state)
        return state
