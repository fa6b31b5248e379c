"""Response-aligned forwards on the tiny model agree with an unpadded, row-by-row reference."""

import torch

from ray_adlf.models.loading import load_causal_lm
from ray_adlf.models.policy import (
    PolicyWithValue,
    pack_sequences,
    response_forward,
    response_positions,
)

PROMPTS = [[4, 205, 279, 266], [4, 300, 301], [4, 205, 279, 266, 349, 335]]
RESPONSES = [[5, 6, 7], [8], [9, 10]]


def reference_logprobs(model, prompt, response, temperature):
    ids = torch.tensor([prompt + response])
    logits = model(input_ids=ids).logits[0] / temperature
    logp = torch.log_softmax(logits, dim=-1)
    return [logp[len(prompt) - 1 + t, token].item() for t, token in enumerate(response)]


def test_packed_logprobs_match_unpadded_rows():
    model = load_causal_lm("tiny").eval()
    batch = pack_sequences(PROMPTS, RESPONSES, pad_id=0)
    assert batch["input_ids"].shape == (3, 8) and batch["response_ids"].shape == (3, 3)
    assert batch["response_mask"].sum(1).tolist() == [3, 1, 2]
    with torch.no_grad():
        out = response_forward(model, batch, temperature=0.7, with_values=False, with_entropy=True)
    for row, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        expected = reference_logprobs(model, prompt, response, 0.7)
        assert torch.allclose(
            out["logprobs"][row, : len(response)], torch.tensor(expected), atol=1e-5
        )
    assert (out["entropy"][batch["response_mask"]] > 0).all()


def test_value_head_starts_at_zero_and_learns():
    policy = PolicyWithValue(load_causal_lm("tiny"))
    batch = pack_sequences(PROMPTS, RESPONSES, pad_id=0)
    out = response_forward(policy, batch, temperature=1.0, with_values=True)
    assert torch.equal(out["values"], torch.zeros_like(out["values"]))
    optimizer = torch.optim.Adam(policy.value_head.parameters(), lr=0.05)
    for _ in range(50):
        values = response_forward(policy, batch, temperature=1.0, with_values=True)["values"]
        loss = ((values - 1.0)[batch["response_mask"]] ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1


def test_separate_critic_keeps_policy_gradients_apart():
    policy = PolicyWithValue(load_causal_lm("tiny"), critic_backbone=load_causal_lm("tiny"))
    batch = pack_sequences(PROMPTS, RESPONSES, pad_id=0)
    torch.nn.init.normal_(policy.value_head.linear.weight)
    values = response_forward(policy, batch, temperature=1.0, with_values=True)["values"]
    values[batch["response_mask"]].sum().backward()
    assert all(p.grad is None for p in policy.policy.parameters())
    assert any(p.grad is not None for p in policy.critic_backbone.parameters())


def test_response_positions_follow_the_device_of_their_input():
    # The meta device stands in for CUDA: a tensor created on the CPU next to it raises.
    positions = response_positions(torch.tensor([3, 4], device="meta"), 5)
    assert positions.device.type == "meta" and positions.shape == (2, 5)
    assert response_positions(torch.tensor([3, 4]), 2).tolist() == [[2, 3], [3, 4]]
