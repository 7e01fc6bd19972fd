"""Two processes on gloo, each owning a shard (ZeroRedundancyOptimizer): each compresses its own state."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.optim import ZeroRedundancyOptimizer

from slimlab.ckpt import ExcpCodec, load_compressed, save_compressed
from slimlab.ckpt.chain import CheckpointChain


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def owned_state(model, zero):
    owned = {id(p) for group in zero.optim.param_groups for p in group["params"]}
    return {name: p.detach() for name, p in model.named_parameters() if id(p) in owned}


def worker(rank, world_size, port, folder):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    zero = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.AdamW, lr=1e-2)
    generator = torch.Generator().manual_seed(rank)
    for step in range(1, 9):
        x = torch.randn(8, 12, generator=generator)
        loss = ddp(x).pow(2).mean()
        zero.zero_grad()
        loss.backward()
        zero.step()
        if step % 4 == 0:
            save_compressed(model, zero.optim, folder, step, ExcpCodec(mode="lossless"), model_state=owned_state(model, zero))
    expected = {name: tensor.clone() for name, tensor in owned_state(model, zero).items()}
    expected_moments = {k: v["exp_avg"].clone() for k, v in zero.optim.state_dict()["state"].items()}
    # Scramble weights and moments, then restore this rank's shard from its own sub-chain.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for entry in zero.optim.state.values():
            entry["exp_avg"].fill_(7.0)
            entry["exp_avg_sq"].fill_(7.0)
    assert load_compressed(model, zero.optim, folder, strict=False) == 8
    restored = owned_state(model, zero)
    assert all(torch.equal(restored[name], tensor) for name, tensor in expected.items())
    assert expected_moments  # this rank owns parameters, so the loop below checks something
    for index, moment in expected_moments.items():
        assert torch.equal(zero.optim.state_dict()["state"][index]["exp_avg"], moment)
    dist.destroy_process_group()


@pytest.mark.distributed
def test_two_ranks_compress_their_own_shards(tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path / "chain")), nprocs=2, join=True)
    shards = [CheckpointChain(tmp_path / "chain" / f"rank-{rank:05d}").load() for rank in range(2)]
    names = [set(shard.model) for shard in shards]
    assert names[0] and names[1] and not names[0] & names[1]  # disjoint shards, nothing gathered
    assert names[0] | names[1] == {"0.weight", "0.bias", "2.weight", "2.bias"}
