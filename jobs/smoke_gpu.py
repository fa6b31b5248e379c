"""GPU smoke test of the learner, the HF engine, the reward model and checkpoints, without Ray.

One command, a few minutes: ``python jobs/smoke_gpu.py [--device cuda] [--model tiny|PATH]
[--precision fp32|bf16|fp16]``. It needs torch and transformers only (no Ray, no vLLM) and puts
the repository on ``sys.path`` itself, so it runs where the package is not installed.
On the model (``tiny`` by default; a local Hugging Face causal LM path works unchanged) it runs,
on one device:

1. one SFT step: the sample conversations rendered in the ``standard`` format, assistant-only
   labels, AdamW; under ``--precision`` autocast (fp16 with a ``GradScaler``), as every
   learner step below;
2. one reward-model step: ``AutoModelForSequenceClassification`` (one label) regressing
   ``score / 5`` on the rendered conversations, same precision;
3. for ``--advantage gae``, ``grpo``, and ``grpo`` with a LoRA adapter (PEFT): three PPO
   rounds of the library's ``RLLearner`` with the ``HFEngine`` as rollout engine and the
   reward model of step 2 as the reward, the weights (with LoRA the adapter alone) synced into
   the engine after each round; a checkpoint after round 1 (``RLLearner.save``), then a fresh
   learner and engine resumed from it (``RLLearner.load``) run rounds 2 and 3 again.

Checked, as the CPU tests check them: every loss finite and the weights changed; the engine's
logprobs against the learner's old logprobs (``logprob_mismatch``, at most ``--parity_tol``);
the resumed run's weights equal the uninterrupted run's (largest difference at most
``--resume_tol``); with LoRA, the first round's KL is 0 (the reference is the policy with
its adapter off, and a fresh adapter changes nothing); Ray never imported. Printed: one line per step with seconds (and peak device memory on CUDA),
then ``SMOKE OK`` or the first check that failed (exit code 1).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

ROUNDS = 3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=default_device)
    parser.add_argument("--model", default="tiny", help="tiny, or a local causal LM path")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument(
        "--parity_tol", type=float, default=None, help="default 1e-3 (fp32), 5e-2 (bf16, fp16)"
    )
    parser.add_argument("--resume_tol", type=float, default=1e-5)
    args = parser.parse_args()
    if args.parity_tol is None:  # a float32 engine against a learner under autocast
        args.parity_tol = 1e-3 if args.precision == "fp32" else 5e-2
    return args


def check(condition: bool, what: str) -> None:
    if not condition:
        print(f"SMOKE FAILED: {what}", flush=True)
        sys.exit(1)


def report(step: str, started: float, device: torch.device, detail: str = "") -> None:
    memory = ""
    if device.type == "cuda":
        memory = f", peak {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
    print(f"{step:<28} {time.perf_counter() - started:7.2f} s{memory}  {detail}", flush=True)


def autocast(device: torch.device, precision: str):
    """Autocast for bf16/fp16 (none for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def train_step(model, batch: dict, loss_of, device: torch.device, precision: str) -> float:
    """One AdamW step of ``loss_of(model, batch)`` (fp16: scaled); returns the loss. Checks
    that the loss is finite and that the weights moved."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, init_scale=1024.0, enabled=precision == "fp16")
    before = [p.detach().clone() for p in model.parameters()]
    with autocast(device, precision):
        loss = loss_of(model, batch)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    check(torch.isfinite(loss).item(), f"non-finite loss {loss.item()}")
    check(any(not torch.equal(a, p) for a, p in zip(before, model.parameters())), "no update")
    return loss.item()


def sft_step(model_path: str, records, device: torch.device, precision: str) -> float:
    from ray_adlf.data.formats import tokenize_conversation
    from ray_adlf.models.loading import load_causal_lm, load_tokenizer
    from ray_adlf.rewards.reward_model import pad_batch

    tokenizer = load_tokenizer(model_path)
    rows = [tokenize_conversation(r.conversation, tokenizer, "standard", 128) for r in records]
    ids, mask = pad_batch([r.input_ids for r in rows], tokenizer.pad_token_id)
    labels, _ = pad_batch([r.labels for r in rows], -100)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    batch = {k: v.to(device) for k, v in batch.items()}
    model = load_causal_lm(model_path).to(device).train()
    return train_step(model, batch, lambda m, b: m(**b).loss, device, precision)


def reward_model_step(model_path: str, records, out_dir: Path, device, precision) -> str:
    """One regression step; the reward model saved (with the tokenizer) into ``out_dir``."""
    from transformers import AutoModelForSequenceClassification

    from ray_adlf.models.loading import load_tokenizer, resolve_model_path
    from ray_adlf.rewards.reward_model import SCORE_SCALE, pad_batch, reward_model_ids

    tokenizer = load_tokenizer(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path(model_path), num_labels=1, problem_type="regression"
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    rows = [
        reward_model_ids(
            r.conversation[:-1], r.conversation[-1].content, tokenizer, "standard", 128
        )
        for r in records
    ]
    ids, mask = pad_batch(rows, tokenizer.pad_token_id)
    target = torch.tensor([r.score / SCORE_SCALE for r in records])
    batch = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "target": target}
    batch["target"] = batch["target"].to(device)
    model.to(device).train()

    def loss_of(m, b):
        predicted = m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, 0]
        return torch.nn.functional.mse_loss(predicted.float(), b["target"])

    loss = train_step(model, batch, loss_of, device, precision)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return f"loss {loss:.4f}"


def rl_config(advantage: str, lora: bool, precision: str, device: torch.device, seed: int = 0):
    from ray_adlf.config import Config, validate

    cfg = Config()
    cfg.resources.use_gpu = device.type == "cuda"
    cfg.run.bf16, cfg.run.fp16 = precision == "bf16", precision == "fp16"
    cfg.model.use_lora = lora
    cfg.rollout.rollout_engine = "hf"
    cfg.data.max_seq_length = 96
    cfg.rollout.max_new_tokens = 16
    cfg.rewards.adlf_alpha = 0.0
    cfg.rewards.use_fluency_reward = False
    cfg.ppo.advantage = advantage
    cfg.ppo.ppo_batch_size = 8 if advantage == "gae" else 4
    cfg.ppo.num_samples_per_prompt = 1 if advantage == "gae" else 4
    cfg.ppo.ppo_minibatch_size = 4 if advantage == "gae" else 16
    cfg.ppo.ppo_epochs = 2 if advantage == "gae" else 1
    cfg.ppo.rl_rounds = ROUNDS
    cfg.ppo.init_kl_coef = 0.05
    cfg.run.seed = seed
    return validate(cfg)


class RLRun:
    """A learner, an engine on the same device and the reward model, as the RL round uses them."""

    def __init__(self, cfg, model_path: str, prompts: list, reward_dir: str, device) -> None:
        from ray_adlf.engines.hf import HFEngine
        from ray_adlf.models.loading import load_tokenizer
        from ray_adlf.models.lora import lora_settings
        from ray_adlf.rewards.reward_model import load_reward_model
        from ray_adlf.rewards.scorer import closing_ids
        from ray_adlf.train.rl_learner import RLLearner

        torch.manual_seed(cfg.run.seed)
        self.cfg, self.prompts, self.device = cfg, prompts, device
        self.tokenizer = load_tokenizer(model_path)
        self.learner = RLLearner(cfg, model_path, prompts, 1, 0, device)
        self.learner.module.to(device)  # what Ray Train's prepare_model does for one rank
        lora = lora_settings(cfg.model)
        self.engine = HFEngine(model_path, seed=cfg.run.seed, device=str(device), lora=lora)
        self.reward_model, self.rm_tokenizer = load_reward_model(reward_dir)
        self.reward_model.to(device)
        self.closing = closing_ids(self.rm_tokenizer, "standard") or []

    def round(self, round_index: int) -> dict[str, float]:
        from ray_adlf.engines.base import SamplingParams
        from ray_adlf.rewards.reward_model import pad_batch
        from ray_adlf.rewards.scorer import ids_with_closing
        from ray_adlf.train.ppo import sampling_params
        from ray_adlf.train.rollout_batch import Rollout

        chosen = [self.prompts[i] for i in self.learner.stream.next_batch()]
        params: SamplingParams = sampling_params(self.cfg, round_index)
        generated = self.engine.generate([p.prompt_ids for p in chosen], params)
        pairs = zip(generated.prompt_ids, generated.response_ids)
        rows = [ids_with_closing(p, r, self.closing) for p, r in pairs]
        ids, mask = pad_batch(rows, self.rm_tokenizer.pad_token_id)
        with torch.no_grad():
            out = self.reward_model(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
            )
        predicted = out.logits[:, 0].float().clamp(0, 1).cpu().numpy()
        rewards = self.learner.combiner.combine({"external": predicted})
        pad_id = self.tokenizer.pad_token_id
        reference = self.learner.reference_logprobs(
            generated.prompt_ids, generated.response_ids, pad_id
        )
        rollout = Rollout(
            generated.prompt_ids,
            generated.response_ids,
            generated.response_logprobs,
            generated.finish_reasons,
            torch.as_tensor(rewards.rewards, dtype=torch.float32),
            self.cfg.ppo.num_samples_per_prompt,
            [round_index - 1] * len(generated.response_ids),
            reference,
        )
        stats, _ = self.learner.train(rollout, round_index, pad_id)
        self.engine.load_weights(self.learner.weights_to_sync(), round_index)
        return stats

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().float().cpu() for k, v in self.learner.module.state_dict().items()}


def rl_check(
    advantage: str, lora: bool, model_path: str, prompts, reward_dir, device, tol, precision
):
    """Rounds 1..3 uninterrupted, and 2..3 again from round 1's checkpoint; see the docstring."""
    parity_tol, resume_tol = tol
    name = f"{advantage}{' LoRA' if lora else ''}"
    with tempfile.TemporaryDirectory() as scratch:
        run = RLRun(
            rl_config(advantage, lora, precision, device), model_path, prompts, reward_dir, device
        )
        synced = sum(t.numel() * t.element_size() for t in run.learner.weights_to_sync().values())
        for round_index in range(1, ROUNDS + 1):
            started = time.perf_counter()
            stats = run.round(round_index)
            mismatch = stats["logprob_mismatch"]
            report(
                f"{name} round {round_index}",
                started,
                device,
                f"policy loss {stats.get('policy_loss', math.nan):.4f}, kl {stats['kl']:.4f}, "
                f"engine/learner logprob mismatch {mismatch:.2e}, {synced / 2**20:.2f} MiB synced",
            )
            check(mismatch <= parity_tol, f"{name}: logprob mismatch {mismatch:.2e}")
            if round_index == 1:
                check(not lora or stats["kl"] < 1e-5, f"{name}: first-round KL {stats['kl']}")
                run.learner.save(Path(scratch), run.tokenizer, {}, run.learner.weights_to_sync())
        uninterrupted = run.weights()
        started = time.perf_counter()
        resumed = RLRun(
            rl_config(advantage, lora, precision, device), model_path, prompts, reward_dir, device
        )
        resumed.learner.load(Path(scratch))
        resumed.engine.load_weights(resumed.learner.weights_to_sync(), 1)
        for round_index in range(2, ROUNDS + 1):
            resumed.round(round_index)
        worst = max((uninterrupted[k] - v).abs().max().item() for k, v in resumed.weights().items())
        report(f"{name} resume from round 1", started, device, f"max |diff| {worst:.2e}")
        check(worst <= resume_tol, f"{name}: resumed differs from uninterrupted by {worst}")


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from ray_adlf.data.rl_prompts import build_rl_prompts
    from ray_adlf.data.sample import sample_path
    from ray_adlf.data.validate import read_records
    from ray_adlf.models.loading import load_tokenizer

    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"smoke_gpu: {name}, torch {torch.__version__}, model {args.model}, {args.precision}")
    records = read_records(sample_path()).records[:32]
    started = time.perf_counter()
    loss = sft_step(args.model, records[:8], device, args.precision)
    report("SFT step", started, device, f"loss {loss:.4f}")
    with tempfile.TemporaryDirectory() as reward_dir:
        started = time.perf_counter()
        detail = reward_model_step(
            args.model, records[:8], Path(reward_dir), device, args.precision
        )
        report("reward-model step", started, device, detail)
        prompts = build_rl_prompts(records, load_tokenizer(args.model), "standard", None, 80)
        for advantage, lora in (("gae", False), ("grpo", False), ("grpo", True)):
            rl_check(
                advantage,
                lora,
                args.model,
                prompts,
                reward_dir,
                device,
                (args.parity_tol, args.resume_tol),
                args.precision,
            )
    check("ray" not in sys.modules, "Ray was imported (the GPU machine has none)")
    print("SMOKE OK", flush=True)


if __name__ == "__main__":
    main()
