"""Where the learner's tensors live: CPU-run stand-ins for GPU bugs, and the CUDA checks.

A learner whose parameters moved before its checkpoint loads must find its Adam moments moved
with them (the bug was loading the optimizer state before Ray Train's ``prepare_model`` moved
the model to the GPU, leaving the moments on the CPU). On this machine a move to float64 stands
in for the move to CUDA: ``Optimizer.load_state_dict`` casts the moments to each parameter's
device and dtype alike, and ``module.to`` keeps the parameter objects the optimizer holds (a
move to ``meta`` would replace them). The ``gpu``-marked tests run the steps on CUDA and skip
without one.
"""

import pytest
import torch

from ray_adlf.config import Config, validate
from ray_adlf.data.rl_prompts import build_rl_prompts
from ray_adlf.data.sample import sample_path
from ray_adlf.data.validate import read_records
from ray_adlf.engines.base import SamplingParams
from ray_adlf.engines.hf import HFEngine
from ray_adlf.models.loading import load_causal_lm, load_tokenizer, resolve_model_path
from ray_adlf.models.policy import pack_sequences, response_forward
from ray_adlf.train.experience import make_experience
from ray_adlf.train.learner_state import load_learner_state, save_learner_state
from ray_adlf.train.ppo_learner import ppo_update
from ray_adlf.train.ppo_settings import PPOSettings
from ray_adlf.train.rl_learner import RLLearner

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def grpo_learner(device: torch.device) -> RLLearner:
    cfg = Config()
    cfg.data.max_seq_length = 96
    cfg.rewards.use_fluency_reward = False
    cfg.ppo.advantage = "grpo"
    cfg.ppo.num_samples_per_prompt = 2
    cfg.ppo.init_kl_coef = 0.0
    validate(cfg)
    records = read_records(sample_path()).records[:8]
    prompts = build_rl_prompts(records, load_tokenizer("tiny"), "standard", None, 80)
    return RLLearner(cfg, resolve_model_path("tiny"), prompts, 1, 0, device)


def test_a_checkpoint_loaded_after_the_move_puts_adam_state_beside_the_parameters(tmp_path):
    learner = grpo_learner(torch.device("cpu"))
    for param in learner.module.parameters():
        param.grad = torch.ones_like(param)
    learner.optimizer.step()
    save_learner_state(tmp_path, learner.state_dict())
    moved = grpo_learner(torch.device("cpu"))
    moved.module.to(torch.float64)  # as prepare_model moves it to a GPU, before the load
    moved.load_state_dict(load_learner_state(tmp_path))
    moments = [
        value
        for per_param in moved.optimizer.state.values()
        for key, value in per_param.items()
        if key in ("exp_avg", "exp_avg_sq")
    ]
    assert moments and all(m.dtype == torch.float64 for m in moments)


def test_a_checkpoint_leaves_the_weights_it_saved_whole_for_the_engines(tmp_path):
    learner = grpo_learner(torch.device("cpu"))
    weights = learner.weights_to_sync()
    names = set(weights)
    assert learner.policy.config.tie_word_embeddings and "lm_head.weight" in names
    learner.save(tmp_path, load_tokenizer("tiny"), {}, weights)
    assert set(weights) == names  # the tied name too: the engines load strictly
    assert (tmp_path / "policy" / "model.safetensors").exists()


@pytest.mark.gpu
@CUDA
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_ppo_step_on_cuda_keeps_every_tensor_there(precision):
    device = torch.device("cuda")
    model = load_causal_lm("tiny").to(device)
    prompts, responses = [[4, 205, 279], [4, 300, 301]], [[5, 6, 7], [8, 9]]
    batch = {k: v.to(device) for k, v in pack_sequences(prompts, responses, 0).items()}
    settings = PPOSettings(advantage="grpo", group_size=2, precision=precision)
    scores = torch.tensor([1.0, 0.0], device=device)
    experience = make_experience(model, None, batch, scores, settings)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    generator = torch.Generator().manual_seed(0)
    stats = ppo_update(model, optimizer, scheduler, experience, settings, generator, scaler)
    assert stats["skipped_steps"] == 0 or scaler is not None
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in model.parameters())
    assert all(
        v.device.type == "cuda" for s in optimizer.state.values() for v in s.values() if v.dim()
    )


@pytest.mark.gpu
@CUDA
def test_the_hf_engine_on_cuda_matches_the_learner():
    engine = HFEngine("tiny", seed=0, device="cuda")
    batch = engine.generate([[4, 205, 279], [4, 300]], SamplingParams(temperature=0.7, seed=1))
    model = load_causal_lm("tiny").cuda()
    packed = pack_sequences(batch.prompt_ids, batch.response_ids, 0)
    with torch.no_grad():
        logprobs = response_forward(model, {k: v.cuda() for k, v in packed.items()}, 0.7, False)
    for row, values in enumerate(batch.response_logprobs):
        got = logprobs["logprobs"][row, : len(values)].cpu()
        assert torch.allclose(got, torch.tensor(values), atol=1e-3)
