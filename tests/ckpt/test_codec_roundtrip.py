import hashlib
import math

import pytest
import torch

from slimlab.ckpt import CheckpointChain, ExcpCodec
from slimlab.ckpt.container import ContainerReader
from slimlab.ckpt.lossless import tensor_bytes
from slimlab.core.errors import SlimlabError


def digest(tensor):
    return hashlib.sha256(tensor_bytes(tensor)).hexdigest()


def assert_optimizer_scalars_equal(decoded, original):
    assert decoded.optimizer.param_groups == original.optimizer.param_groups  # lr, betas tuple, eps, wd ... exact
    assert isinstance(decoded.optimizer.param_groups[0]["betas"], tuple)
    for index, entry in original.optimizer.state.items():
        step = decoded.optimizer.state[index]["step"]
        assert step.dtype == entry["step"].dtype and step.item() == entry["step"].item()
    assert decoded.optimizer.param_names == original.optimizer.param_names


def test_lossless_chain_is_bit_exact(tmp_path, trained_states):
    chain = CheckpointChain(tmp_path, ExcpCodec(mode="lossless"))
    for step, state in enumerate(trained_states, start=1):
        chain.append(state, step * 20)
    for step, state in enumerate(trained_states, start=1):
        decoded = chain.load(step * 20)
        assert {n: digest(t) for n, t in decoded.model.items()} == {n: digest(t) for n, t in state.model.items()}
        for index, entry in state.optimizer.state.items():
            for key in ("exp_avg", "exp_avg_sq"):
                assert digest(decoded.optimizer.state[index][key]) == digest(entry[key])
        assert decoded.aliases == state.aliases == {"head.weight": "embed.weight"}
        assert_optimizer_scalars_equal(decoded, state)


def test_excp_decodes_what_the_encoder_reconstructed(tmp_path, trained_states):
    chain = CheckpointChain(tmp_path, ExcpCodec())
    results = [chain.append(state, step) for step, state in enumerate(trained_states, start=1)]
    stats = {}
    decoded = chain.load(3, stats)
    # Residuals are taken against the reconstruction, so decoder and encoder agree exactly: no drift.
    for name, tensor in decoded.model.items():
        assert torch.equal(tensor, results[-1].reconstructed[name]), name
    assert_optimizer_scalars_equal(decoded, trained_states[-1])
    assert stats["orphaned_first_moments"] == 0
    for index, entry in decoded.optimizer.state.items():
        m, v = entry["exp_avg"], entry["exp_avg_sq"]
        assert torch.all(m[v == 0] == 0)  # first moment zero wherever the second is
        assert m.dtype == trained_states[-1].optimizer.state[index]["exp_avg"].dtype
    # sizes are whole files, footer included
    assert [r.coded_bytes for r in results] == [chain.path_for(step).stat().st_size for step in (1, 2, 3)]
    # the lossy delta's streams are much smaller than the lossless keyframe's (on this tiny model the JSON footer,
    # about 8 KB of codebooks and per-tensor entries, outweighs them)
    streams = [sum(size for kind, size in r.bytes_by_kind.items() if kind != "footer") for r in results]
    assert streams[1] * 3 < streams[0]
    error = max((decoded.model[n] - t).abs().max().item() for n, t in trained_states[-1].model.items())
    assert error < 0.05


def test_keyframes_bound_the_decode_depth(tmp_path, trained_states):
    chain = CheckpointChain(tmp_path, ExcpCodec(keyframe_every=2))
    states = trained_states + trained_states[1:]
    for step, state in enumerate(states, start=1):
        chain.append(state, step)
    assert [entry["depth"] for entry in chain.entries] == [0, 1, 0, 1, 0]
    assert [entry["parent_id"] is None for entry in chain.entries] == [True, False, True, False, True]


def test_bf16_weights_round_trip(tmp_path, trained_states):
    state = trained_states[0]
    state.model = {name: tensor.to(torch.bfloat16) for name, tensor in state.model.items()}
    chain = CheckpointChain(tmp_path, ExcpCodec(mode="lossless"))
    chain.append(state, 1)
    decoded = chain.load(1)
    for name, tensor in state.model.items():
        assert decoded.model[name].dtype == torch.bfloat16 and torch.equal(decoded.model[name], tensor)


def test_excp_ref_official_semantics(tmp_path, trained_states):
    chain = CheckpointChain(tmp_path, ExcpCodec(mode="excp-ref"))
    for step, state in enumerate(trained_states[:2], start=1):
        result = chain.append(state, step)
    decoded = chain.load(2)
    for name, tensor in decoded.model.items():
        assert torch.equal(tensor, result.reconstructed[name])
    codebooks = [entry.get("codebook_fp16") for entry in _header(tmp_path / "step-00000002.excp")["tensors"].values()]
    assert any(book for book in codebooks)  # residual codebooks stored in fp16 as the official code does


def _header(path):
    from slimlab.ckpt.container import ContainerReader
    with ContainerReader(path) as reader:
        return reader.header


@pytest.mark.parametrize("mode", ["excp", "lossless"])
def test_moments_without_weights_pairing_still_round_trip(tmp_path, trained_states, mode):
    state = trained_states[1]
    state.optimizer.param_names = [""] * len(state.optimizer.param_names)  # names unknown
    chain = CheckpointChain(tmp_path, ExcpCodec(mode=mode))
    chain.append(trained_states[0], 1)
    chain.append(state, 2)
    decoded = chain.load(2)
    assert set(decoded.optimizer.state) == set(state.optimizer.state)


def test_adam_score_meets_the_checkpoint_budget(tmp_path, trained_states):
    chain = CheckpointChain(tmp_path, ExcpCodec(score="adam", keep_fraction=0.25))
    results = [chain.append(state, step) for step, state in enumerate(trained_states, start=1)]
    header = ContainerReader(chain.path_for(3)).header
    coded = [entry for entry in header["tensors"].values() if entry["coding"] == "excp"]
    kept, total = sum(e["kept"] for e in coded), sum(math.prod(e["shape"]) for e in coded)
    # one threshold for the whole checkpoint: the budget, or a little more (one histogram bin of ties)
    assert 0.25 <= kept / total <= 0.27
    assert len({round(e["kept"] / math.prod(e["shape"]), 2) for e in coded}) > 1  # tensors get different shares
    assert header["codec"]["score"] == "adam" and header["codec"]["keep_fraction"] == 0.25
    decoded = chain.load(3)
    for name, tensor in decoded.model.items():
        assert torch.equal(tensor, results[-1].reconstructed[name]), name


@pytest.mark.parametrize("settings, message", [
    ({"score": "fisher"}, "score 'fisher'"),
    ({"score": "adam", "mode": "lossless"}, "mode 'excp' only"),
    ({"score": "curvature", "mode": "excp-ref"}, "score 'curvature' applies to mode 'excp' only"),
    ({"score": "adam", "keep_fraction": 0.0}, "keep_fraction"),
])
def test_score_settings_are_checked(settings, message):
    with pytest.raises(SlimlabError, match=message):
        ExcpCodec(**settings)


def test_reference_mode_keeps_tensors_with_few_values_in_fp32():
    from slimlab.ckpt.reference_format import fp16_quantize
    few = torch.tensor([-0.0082773790, 0.001, 0.25, 1e-7, 3.3, -2.0, 0.5])  # 7 <= 15 values: stored exactly (spec)
    indices, codebook = fp16_quantize(few, 15, "kmeans")
    assert torch.equal(codebook[indices], few)
    many = torch.linspace(-1, 1, 100) + 1e-4  # more values than clusters: fp16 codebook, as the official code
    _, codebook = fp16_quantize(many, 15, "kmeans")
    assert torch.equal(codebook, codebook.half().float())


def structured_states(count=3):
    """Checkpoints of one linear layer whose inputs and outputs have very different scales, so Adam's v (and
    any |dW| * v^power support) has row and column structure."""
    from slimlab.ckpt.training import state_from_objects
    torch.manual_seed(0)
    layer = torch.nn.Linear(96, 128, bias=False)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-2)
    target = torch.randn(96, 128)
    col_scale, row_scale = torch.logspace(-2, 1, 96), torch.logspace(-2, 1, 128)
    states = []
    for _ in range(count):
        for _ in range(10):
            inputs = torch.randn(32, 96) * col_scale
            loss = ((layer(inputs) - inputs @ target) * row_scale).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        states.append(state_from_objects(layer, optimizer))
    return states


def test_curvature_score_codes_structured_supports_by_rows_and_columns(tmp_path):
    chain = CheckpointChain(tmp_path, ExcpCodec(score="curvature", keep_fraction=0.2))
    results = [chain.append(state, step) for step, state in enumerate(structured_states(), start=1)]
    header = ContainerReader(chain.path_for(3)).header
    assert header["version"] == 5
    entry = header["tensors"]["weight"]
    assert entry["support_coding"] == "row_column"
    assert 0.2 <= entry["kept"] / (96 * 128) <= 0.21
    decoded = chain.load(3)
    assert torch.equal(decoded.model["weight"], results[-1].reconstructed["weight"])


def test_default_score_keeps_order0_masks(tmp_path):
    chain = CheckpointChain(tmp_path, ExcpCodec())
    for step, state in enumerate(structured_states(2), start=1):
        chain.append(state, step)
    assert "support_coding" not in ContainerReader(chain.path_for(2)).header["tensors"]["weight"]
