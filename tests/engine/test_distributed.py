"""Distributed training: the device and torchrun settings, and (slow) real torchrun groups on the CPU."""

from __future__ import annotations

import pytest
import torch

from models_mgmt.engine import distributed
from models_mgmt.engine.distributed import (
    DeviceUnavailable,
    DistributedSettings,
    device_label,
    resolve_device,
)


def test_settings_round_trip_the_wire_and_count_the_world():
    settings = DistributedSettings.from_wire({"nprocPerNode": 4, "nnodes": 2, "rdzvEndpoint": "10.0.0.5:29400"})
    assert settings.world_size == 8
    assert settings.to_wire() == {"nprocPerNode": 4, "nnodes": 2, "rdzvEndpoint": "10.0.0.5:29400"}
    assert DistributedSettings.from_wire({"nprocPerNode": 2}) == DistributedSettings(2)


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ({"nprocPerNode": 0}, "nprocPerNode"),
        ({"nprocPerNode": 65}, "nprocPerNode"),
        ({"nprocPerNode": 1, "nnodes": 0}, "nnodes"),
        ({"nprocPerNode": 1, "nnodes": 2}, "rdzvEndpoint"),
        ({"nprocPerNode": 1, "nnodes": 2, "rdzvEndpoint": "nohost"}, "host:port"),
        ({"nprocPerNode": 1, "nnodes": 2, "rdzvEndpoint": "h:99999"}, "host:port"),
    ],
)
def test_settings_refuse_what_no_machine_can_run(wire, message):
    with pytest.raises(ValueError, match=message):
        DistributedSettings.from_wire(wire)


def test_auto_picks_cuda_only_when_a_gpu_is_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", ranks=2) == "cuda"
    assert resolve_device("cpu") == "cpu"


def test_devices_the_machine_cannot_honour_are_refused_with_what_to_do(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailable, match="no usable GPU"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(DeviceUnavailable, match="3 ranks on one host need 3 GPUs but this worker has 2"):
        resolve_device("cuda", ranks=3)
    monkeypatch.setattr(distributed, "usable_cpus", lambda: 2)
    with pytest.raises(DeviceUnavailable, match="3 CPU ranks on one host need 3 CPUs but this worker may use 2"):
        resolve_device("cpu", ranks=3)
    with pytest.raises(DeviceUnavailable, match="one of auto, cpu, cuda"):
        resolve_device("tpu")


def test_device_labels_name_the_device_ranks_backend_and_hosts():
    assert device_label("cpu", None) == "cpu"
    assert device_label("cuda", None) == "cuda:0"
    assert device_label("cuda:1", None) == "cuda:1"
    assert device_label("cpu", DistributedSettings(2)) == "cpu x2 gloo"
    assert device_label("cuda", DistributedSettings(4, nnodes=2, rdzv_endpoint="h:29400")) == "cuda x8 nccl (2 nodes)"


def test_the_module_loads_no_torch():
    import subprocess
    import sys

    code = "import sys, models_mgmt.engine.distributed; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _weights_digest(model) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.numpy().tobytes())
    return digest.hexdigest()


def test_training_on_the_cpu_device_is_the_default_run_bit_for_bit(split, spec):
    from models_mgmt.engine.trainer import fit

    default = fit(spec, split)
    on_cpu = fit(spec, split, device="cpu")
    assert _weights_digest(on_cpu.model) == _weights_digest(default.model)
    timeless = [{k: v for k, v in row.items() if k != "duration_s"} for row in on_cpu.history]
    assert timeless == [{k: v for k, v in row.items() if k != "duration_s"} for row in default.history]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_training_on_cuda_keeps_the_weights_on_the_cpu_afterwards(split, spec, tmp_path):
    from models_mgmt.engine.trainer import fit

    on_cpu = fit(spec, split)
    on_gpu = fit(spec, split, device="cuda", checkpoint_path=tmp_path / "checkpoint.pt")
    assert all(t.device.type == "cpu" for t in on_gpu.model.state_dict().values())
    assert abs(on_gpu.best_val_loss - on_cpu.best_val_loss) < 0.02
