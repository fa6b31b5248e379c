"""The PPO learner's models: a causal LM policy with a value head, and response-aligned forwards.

Value head (``--critic_mode``):

- ``shared``: one backbone; ``V = w . h_L + b`` on the last hidden state ``h_L`` of the policy
  itself, so one forward gives logits and values.
- ``separate``: a second copy of the starting policy's backbone (its own weights and optimizer
  state) with the same kind of head; the policy's gradients never reach it.

The head is initialised to zero (``w = 0, b = 0``): every value starts at 0, the PPO value loss
then fits it to the returns, and the policy's first updates are not pushed around by random
value estimates.

Sequences are ``prompt + response`` right-padded to ``[B, L]``; the response of row ``i`` starts
at ``prompt_lengths[i]``. Response token ``t`` of row ``i`` is predicted by the logits at
position ``prompt_lengths[i] + t - 1``, and its value ``V(s_t)`` is read at that same position
(the state before the token is emitted).
"""

from __future__ import annotations

import torch
from torch import nn

from ray_adlf.algo.losses import entropy_from_logits, logprobs_from_logits


class ValueHead(nn.Module):
    """``V(h) = w . h + b`` with ``w, b`` zero at initialisation. h: [..., H] -> [...]."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """In float32 even under autocast (the value loss compares it with float32 returns)."""
        with torch.autocast(hidden.device.type, enabled=False):
            return self.linear(hidden.float()).squeeze(-1)


class PolicyWithValue(nn.Module):
    """A causal LM policy plus a value head on the policy (``shared``) or on its own backbone."""

    def __init__(self, policy: nn.Module, critic_backbone: nn.Module | None = None):
        super().__init__()
        self.policy = policy
        self.critic_backbone = critic_backbone
        self.value_head = ValueHead(policy.config.hidden_size)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids, attention_mask: [B, L] -> (logits [B, L, V], values [B, L])."""
        out = self.policy(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=self.critic_backbone is None,
        )
        if self.critic_backbone is None:
            hidden = out.hidden_states[-1]
        else:
            critic = self.critic_backbone(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
            )
            hidden = critic.hidden_states[-1]
        return out.logits, self.value_head(hidden)


def pack_sequences(
    prompt_ids: list[list[int]], response_ids: list[list[int]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Right-padded ``prompt + response`` rows.

    Returns ``input_ids`` [B, L], ``attention_mask`` [B, L], ``prompt_lengths`` [B],
    ``response_ids`` [B, T] (pad after the end) and ``response_mask`` [B, T].
    """
    rows = [p + r for p, r in zip(prompt_ids, response_ids)]
    length = max(len(row) for row in rows)
    width = max(max(len(r) for r in response_ids), 1)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    responses = torch.full((len(rows), width), pad_id, dtype=torch.long)
    response_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row, response) in enumerate(zip(rows, response_ids)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
        responses[i, : len(response)] = torch.tensor(response, dtype=torch.long)
        response_mask[i, : len(response)] = True
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "prompt_lengths": torch.tensor([len(p) for p in prompt_ids]),
        "response_ids": responses,
        "response_mask": response_mask,
    }


def response_positions(prompt_lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Positions whose logits predict response token t: ``prompt_lengths[i] - 1 + t``. -> [B, T]."""
    offsets = torch.arange(width, device=prompt_lengths.device)
    return prompt_lengths.unsqueeze(1) - 1 + offsets.unsqueeze(0)


def response_forward(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    temperature: float,
    with_values: bool,
    with_entropy: bool = False,
) -> dict[str, torch.Tensor]:
    """Per-response-token quantities of ``model`` on a packed batch (``pack_sequences``).

    ``logprobs`` [B, T] = ``log_softmax(logits / temperature)[token]``; with ``with_values``,
    ``values`` [B, T] (``model`` must be a PolicyWithValue); with ``with_entropy``,
    ``entropy`` [B, T] of ``softmax(logits / temperature)``. Positions past a response's end
    hold garbage: always combine with ``response_mask``.
    """
    if with_values:
        logits, values = model(batch["input_ids"], batch["attention_mask"])
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    width = batch["response_ids"].shape[1]
    positions = response_positions(batch["prompt_lengths"], width).clamp(max=logits.shape[1] - 1)
    index = positions.to(logits.device)
    picked = torch.gather(logits, 1, index.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
    out = {"logprobs": logprobs_from_logits(picked, batch["response_ids"], temperature)}
    if with_values:
        out["values"] = torch.gather(values, 1, index)
    if with_entropy:
        out["entropy"] = entropy_from_logits(picked.float() / temperature)
    return out
