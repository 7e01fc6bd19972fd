import pytest
import torch

from slimlab.ckpt import CheckpointChain, ExcpCodec
from slimlab.ckpt.training import state_from_objects


class TinyLM(torch.nn.Module):
    """Embedding -> MLP -> tied output head; odd sizes on purpose (no even-length assumptions)."""

    def __init__(self, vocabulary=37, width=21):
        super().__init__()
        self.embed = torch.nn.Embedding(vocabulary, width)
        self.hidden = torch.nn.Linear(width, 33)
        self.norm = torch.nn.LayerNorm(33)
        self.out = torch.nn.Linear(33, width)
        self.head = torch.nn.Linear(width, vocabulary, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("calls", torch.zeros(3))

    def forward(self, tokens):
        hidden = self.out(torch.nn.functional.gelu(self.norm(self.hidden(self.embed(tokens)))))
        return self.head(hidden)


def make_model_and_optimizer(seed=0, lr=3e-3):
    torch.manual_seed(seed)
    model = TinyLM()
    decay = [p for n, p in model.named_parameters() if "bias" not in n and "norm" not in n]
    rest = [p for n, p in model.named_parameters() if "bias" in n or "norm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.95))
    return model, optimizer


def batch(generator, size=16):
    tokens = torch.randint(0, 37, (size,), generator=generator)
    # Half the labels are noise, so the loss has a floor (~2.1 nats) and relative tolerances mean something.
    noise = torch.randint(0, 37, (size,), generator=generator)
    keep = torch.rand(size, generator=generator) < 0.5
    return tokens, torch.where(keep, (tokens * 5 + 3) % 37, noise)


def train(model, optimizer, steps, generator):
    losses = []
    for _ in range(steps):
        tokens, targets = batch(generator)
        loss = torch.nn.functional.cross_entropy(model(tokens), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.fixture
def trained_states():
    """Three consecutive checkpoints of a tiny model (CheckpointState each, 20 steps apart)."""
    model, optimizer = make_model_and_optimizer()
    generator = torch.Generator().manual_seed(1)
    states = []
    for _ in range(3):
        train(model, optimizer, 20, generator)
        states.append(state_from_objects(model, optimizer))
    return states


@pytest.fixture
def chain(tmp_path, trained_states):
    """The three trained states appended to a chain at steps 1, 2, 3 (a keyframe and two deltas)."""
    chain = CheckpointChain(tmp_path / "chain", ExcpCodec())
    for step, state in enumerate(trained_states, start=1):
        chain.append(state, step)
    return chain
