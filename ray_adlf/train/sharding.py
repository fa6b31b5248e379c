"""The sharded RL learner (``--learner_strategy fsdp``): FSDP2 over the Ray Train ranks.

``shard_module`` applies ``torch.distributed.fsdp.fully_shard`` to every transformer block
(the classes a Hugging Face model names in ``_no_split_modules``) and then to the whole
module, on a 1-D device mesh over every rank (gloo on CPU, NCCL on GPU: the group Ray Train
set up). Each rank then holds 1/world of every parameter, gradient and Adam moment; a block's
full weights exist only while it runs (all-gathered before, freed after), and the gradients
are reduce-scattered, so the update equals DDP's up to the order of floating-point sums.

Collective by construction, so every rank calls these together:

- ``full_state_dict``: the unsharded weights gathered one parameter at a time into rank 0's
  CPU memory (never the whole model in one message; the other ranks get ``{}``);
- ``save_sharded`` / ``load_sharded``: the model and optimizer shards through
  ``torch.distributed.checkpoint`` (each rank writes its own file under ``sharded/``, rank 0
  the metadata), so a resume continues exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch

SHARDED_DIR = "sharded"


def block_classes(module: torch.nn.Module) -> set[str]:
    """Class names of the blocks to shard one by one: every ``_no_split_modules`` named by a
    Hugging Face model inside ``module``."""
    names: set[str] = set()
    for part in module.modules():
        names.update(getattr(part, "_no_split_modules", None) or ())
    return names


def shard_module(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``module`` with FSDP2 applied in place: each block, then the root (module docstring)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    module.to(device)
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    blocks = block_classes(module)
    if not blocks:
        raise ValueError(
            f"{type(module).__name__}: no transformer block classes (_no_split_modules) to "
            "shard; use --learner_strategy ddp"
        )
    for part in list(module.modules()):
        if type(part).__name__ in blocks:
            fully_shard(part, mesh=mesh)
    fully_shard(module, mesh=mesh)
    return module


def full_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every rank: the unsharded state dict, on rank 0's CPU; ``{}`` on the other ranks."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(module, options=options)


def save_sharded(directory: Path, module: torch.nn.Module, optimizer) -> None:
    """Every rank: its shards of the model and optimizer under ``directory/sharded``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(module, optimizer)
    dcp.save(
        {"model": model_state, "optimizer": optimizer_state},
        checkpoint_id=str(directory / SHARDED_DIR),
    )


def load_sharded(directory: Path, module: torch.nn.Module, optimizer) -> None:
    """Every rank: its shards back from ``directory/sharded`` (written by ``save_sharded``
    with the same world size and strategy)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optimizer_state = get_state_dict(module, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=str(directory / SHARDED_DIR))
    set_state_dict(
        module,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optimizer"],
    )
