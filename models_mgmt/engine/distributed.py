"""Where a run trains: the device (CPU or CUDA) and, for a distributed run, the torchrun group.

This module imports no torch at module level: the web process imports it for the validation
constants (`DEVICES`, `DistributedSettings`) and for `device_label`, and must stay free of torch.

* `resolve_device("auto" | "cpu" | "cuda", ranks=n)` decides, on the machine that trains, the device a
  run uses, and refuses (`DeviceUnavailable`, a message a user can act on) what the machine cannot
  honour: CUDA without a GPU, more ranks than GPUs (cuda) or than usable CPUs (cpu).
* `device_label` is the short text a job records: "cpu", "cuda:0", "cpu x2 gloo",
  "cuda x8 nccl (2 nodes)".
* `DistributedError` is what a process group that failed past its restarts raises; its text ends with
  torchrun's last log lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .metering import usable_cpus

DEVICES = ("auto", "cpu", "cuda")
MAX_NPROC_PER_NODE = 64


class DeviceUnavailable(Exception):
    """The machine cannot honour the requested device or number of ranks."""


class DistributedError(Exception):
    """The process group failed past its restarts; the text ends with torchrun's last log lines."""


@dataclass(frozen=True)
class DistributedSettings:
    """A job's `distributed` settings: ranks per host, hosts, and the rendezvous for nnodes > 1."""

    nproc_per_node: int
    nnodes: int = 1
    rdzv_endpoint: str | None = None  # "host:port"; required when nnodes > 1 (the claiming worker hosts it)

    def __post_init__(self) -> None:
        if not 1 <= self.nproc_per_node <= MAX_NPROC_PER_NODE:
            raise ValueError(f"nprocPerNode must be between 1 and {MAX_NPROC_PER_NODE}")
        if self.nnodes < 1:
            raise ValueError("nnodes must be at least 1")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("rdzvEndpoint (host:port) is required when nnodes > 1")
        if self.rdzv_endpoint is not None:
            host, _, port = self.rdzv_endpoint.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("rdzvEndpoint must be host:port")

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
