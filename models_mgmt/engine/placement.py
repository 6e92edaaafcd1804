"""Where a run trains: the device (CPU or CUDA) and the shape of a torchrun group.

This module imports no torch at module level, nor the training modules: the web process imports it
for the validation constants (`DEVICES`, `DistributedSettings`) and for `device_label`.

* `group_problems`, `endpoint_problem` and `world_problem` are the one check of a group's shape
  (ranks, hosts, rendezvous endpoint, world size, its share of the batch): the service that resolves
  a job's config maps them to its 400s, and `DistributedSettings` and the trainer refuse the same.
* `resolve_device("auto" | "cpu" | "cuda", ranks=n)` decides, on the machine that trains, the device a
  run uses, and refuses (`DeviceUnavailable`, a message a user can act on) what the machine cannot
  honour: CUDA without a GPU, more ranks than GPUs (cuda) or than usable CPUs (cpu).
* `device_label` is the short text a job records: "cpu", "cuda:0", "cpu x2 gloo",
  "cuda x8 nccl (2 nodes)".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .metering import usable_cpus

DEVICES = ("auto", "cpu", "cuda")
MAX_NPROC_PER_NODE = 64
MAX_WORLD_SIZE = 64  # ranks of one job over all its hosts
DISTRIBUTED_KEYS = ("nprocPerNode", "nnodes", "rdzvEndpoint")
MAX_HOST_LENGTH = 253  # a DNS name's longest
# A host name or IPv4 address (ASCII letters, digits, dots, hyphens; never a leading '-', which torchrun
# would read as an option), or a bracketed IPv6 address.
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\]")


class DeviceUnavailable(Exception):
    """The machine cannot honour the requested device or number of ranks."""


def endpoint_problem(value: Any) -> str | None:
    """Why `value` is not a rendezvous endpoint "host:port" torchrun can take, or None."""
    if not isinstance(value, str):
        return "must be a string host:port"
    host, _, port = value.rpartition(":")
    if (
        len(host) > MAX_HOST_LENGTH
        or not _HOST.fullmatch(host)
        or not (port.isascii() and port.isdigit())  # "²" and "٣" are digits to str.isdigit, not to int()
        or not 0 < int(port) < 65536
    ):
        return (
            "must be host:port (a host name, IPv4 or [IPv6] address and a port 1-65535), the rendezvous the "
            "claiming worker hosts"
        )
    return None


def _count_problem(value: Any, high: int | None) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be an integer"
    if value < 1 or (high is not None and value > high):
        return "must be at least 1" + (f" and at most {high}" if high is not None else "")
    return None


def group_problems(nproc_per_node: Any, nnodes: Any = 1, rdzv_endpoint: Any = None) -> dict[str, str]:
    """What is wrong with a torchrun group's settings, per wire key (empty when nothing is).

    The one check of a group's shape: the service that resolves a job's config maps these to its
    400s, and DistributedSettings refuses the same. Whether a machine has the CPUs or GPUs for it is
    `resolve_device`'s decision, on that machine."""
    problems: dict[str, str] = {}
    if nproc_per_node is None:
        problems["nprocPerNode"] = "required: the ranks (processes) on each host"
    elif problem := _count_problem(nproc_per_node, MAX_NPROC_PER_NODE):
        problems["nprocPerNode"] = problem
    if problem := _count_problem(nnodes, None):
        problems["nnodes"] = problem
    if rdzv_endpoint is not None:
        if problem := endpoint_problem(rdzv_endpoint):
            problems["rdzvEndpoint"] = problem
    elif "nnodes" not in problems and nnodes > 1:
        problems["rdzvEndpoint"] = "required when nnodes > 1: host:port of the rendezvous the claiming worker hosts"
    return problems


def world_problem(world: int, batch_size: int | None = None) -> str | None:
    """Why a group of `world` ranks cannot train (too many ranks, or `batch_size` not shared evenly), or None."""
    if world > MAX_WORLD_SIZE:
        return f"world size nprocPerNode x nnodes = {world} must be at most {MAX_WORLD_SIZE}"
    if batch_size is not None and batch_size % world:
        return (
            f"world size nprocPerNode x nnodes = {world} must divide batchSize ({batch_size}): every rank "
            "takes an equal share of each batch, so the global batch is the same as in one process"
        )
    return None


@dataclass(frozen=True)
class DistributedSettings:
    """A job's `distributed` settings: ranks per host, hosts, and the rendezvous for nnodes > 1."""

    nproc_per_node: int
    nnodes: int = 1
    rdzv_endpoint: str | None = None  # "host:port"; required when nnodes > 1 (the claiming worker hosts it)

    def __post_init__(self) -> None:
        problems = group_problems(self.nproc_per_node, self.nnodes, self.rdzv_endpoint)
        if problems:
            raise ValueError("; ".join(f"{key} {problem}" for key, problem in problems.items()))
        if problem := world_problem(self.world_size):
            raise ValueError(problem)

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> DistributedSettings:
        return cls(
            nproc_per_node=int(data["nprocPerNode"]),
            nnodes=int(data.get("nnodes", 1)),
            rdzv_endpoint=data.get("rdzvEndpoint") or None,
        )

    def to_wire(self) -> dict[str, Any]:
        return {"nprocPerNode": self.nproc_per_node, "nnodes": self.nnodes, "rdzvEndpoint": self.rdzv_endpoint}


def resolve_device(requested: str, *, ranks: int = 1) -> str:
    """The device ("cpu" or "cuda") a run of `ranks` processes on this host trains on."""
    if requested not in DEVICES:
        raise DeviceUnavailable(f"device must be one of {', '.join(DEVICES)}, not {requested!r}")
    import torch  # heavy: only the training worker loads torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = ("cuda" if gpus else "cpu") if requested == "auto" else requested
    if device == "cuda":
        if not gpus:
            raise DeviceUnavailable(
                "device 'cuda' was requested but this worker has no usable GPU; use 'cpu' or 'auto'"
            )
        if ranks > gpus:
            raise DeviceUnavailable(
                f"{ranks} ranks on one host need {ranks} GPUs but this worker has {gpus}; lower nprocPerNode"
            )
    elif ranks > (cpus := usable_cpus()):
        raise DeviceUnavailable(
            f"{ranks} CPU ranks on one host need {ranks} CPUs but this worker may use {cpus}; lower nprocPerNode"
        )
    return device


def device_label(device: str, distributed: DistributedSettings | None) -> str:
    """What a job records as its device: "cpu", "cuda:0", "cpu x2 gloo", "cuda x8 nccl (2 nodes)"."""
    kind = device.split(":", 1)[0]
    if distributed is None:
        return "cuda:0" if device == "cuda" else device
    label = f"{kind} x{distributed.world_size} {'nccl' if kind == 'cuda' else 'gloo'}"
    return f"{label} ({distributed.nnodes} nodes)" if distributed.nnodes > 1 else label
