"""Processes and devices: one process, or several under torchrun (DDP or FSDP2).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; the process group is started here (NCCL on
GPUs, gloo on the CPU) unless the caller started one already. Every process reads the same
global batch and keeps its own slice, so a run's losses do not depend on the process count.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from archlab.errors import ConfigError
from archlab.train.config import TrainConfig


@dataclass(frozen=True)
class DistInfo:
    rank: int  # this process's index
    world: int  # number of processes
    local_rank: int  # index on this host (picks the GPU)
    device: torch.device  # where this process computes
    mode: str  # "single", "ddp" or "fsdp"
    started_group: bool  # this code started the process group (and should end it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.mode == "fsdp"


def resolve_device(cfg: TrainConfig, local_rank: int = 0) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device: 'cuda' asked for, but torch sees no CUDA device; use cpu or auto")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup(cfg: TrainConfig) -> DistInfo:
    """The process layout of this run; starts the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(cfg, local_rank)
    started = False
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        started = True
    if dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    mode = "single" if world == 1 else ("fsdp" if cfg.distributed == "fsdp" else "ddp")
    return DistInfo(rank, world, local_rank, device, mode, started)


def teardown(info: DistInfo) -> None:
    if info.started_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()


def mean_across(info: DistInfo, t: torch.Tensor) -> torch.Tensor:
    """The mean of ``t`` over processes (in place for several processes)."""
    if info.world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= info.world
    return t


def shard_fsdp(model: nn.Module, info: DistInfo) -> None:
    """FSDP2: shard each block, then the rest (embedding, final norm, head) at the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(info.device.type, (info.world,))
    seen: set[int] = set()
    for block in getattr(model, "blocks", []):
        if id(block) not in seen:  # a block shared by tied layers is sharded once
            seen.add(id(block))
            fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)


def no_grad_sync(model: nn.Module, info: DistInfo, last_micro_step: bool):
    """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP2) on all but the last micro-step."""
    if info.mode == "ddp" and not last_micro_step:
        return model.no_sync()
    if info.mode == "fsdp":
        model.set_requires_gradient_sync(last_micro_step)
    return contextlib.nullcontext()


def average_buffers(modules: list[nn.Module], info: DistInfo) -> None:
    """Average the floating-point buffers of ``modules`` over processes, so state updated from
    each process's own batch (e.g. aux-loss-free MoE routing biases) stays the same everywhere."""
    if info.world == 1:
        return
    for m in modules:
        for b in m.buffers():
            if b.is_floating_point():
                mean_across(info, b.data)
