"""``delta_v``: log v coded against the parent's decoded v (spec P5 ablation)."""

import pytest
import torch

from slimlab.ckpt import CheckpointChain, ExcpCodec
from slimlab.ckpt.container import ContainerReader
from slimlab.ckpt.decode import decode_checkpoint
from slimlab.core.errors import SlimlabError


def moments_by_name(state):
    return {name: state.optimizer.state[index] for index, name in enumerate(state.optimizer.param_names)
            if name and index in state.optimizer.state}


def test_delta_v_decodes_what_the_encoder_reconstructed(tmp_path, trained_states):
    chain = CheckpointChain(tmp_path, ExcpCodec(delta_v=True))
    results = [chain.append(state, step) for step, state in enumerate(trained_states, start=1)]
    keyframe = ContainerReader(chain.path_for(1)).header["optimizer"]["state"]
    delta = ContainerReader(chain.path_for(2)).header["optimizer"]["state"]
    assert not any("v_delta" in r.get("moments", {}) for r in keyframe.values())  # nothing to code against
    assert any("v_delta" in r.get("moments", {}) for r in delta.values())
    for step, result in enumerate(results, start=1):
        decoded = moments_by_name(CheckpointChain(tmp_path).load(step))  # fresh object: decoded through the lineage
        assert set(result.second_moments) == set(decoded)
        for name, entry in decoded.items():
            # the encoder's copy is the next file's delta base: it must be the decoder's, bit for bit
            assert torch.equal(entry["exp_avg_sq"], result.second_moments[name]), (step, name)
            assert torch.all(entry["exp_avg"][entry["exp_avg_sq"] == 0] == 0)


def first_two_second_moments(folder, codec, trained_states, name="hidden.weight"):
    chain = CheckpointChain(folder, codec)
    return chain.append(trained_states[0], 1).second_moments[name], chain.append(trained_states[1], 2).second_moments[name]


def test_delta_v_stores_ratios_to_the_parent_where_the_parent_has_v(tmp_path, trained_states):
    # beta 0 keeps the moments on the whole weight support, so consecutive files share many positions
    parent, child = first_two_second_moments(tmp_path / "a", ExcpCodec(delta_v=True, beta=0.0), trained_states)
    both = (parent > 0) & (child > 0)
    assert both.sum() > 100
    # v_hat = parent * exp(codebook[i]): at most 15 distinct ratios, while v_hat itself takes many values
    ratios = torch.log(child[both]) - torch.log(parent[both])
    assert len(torch.unique(torch.round(ratios * 1e4))) <= 15
    assert len(torch.unique(child[both])) > 15
    # where the parent kept no v (default beta: sparse moment masks), log v is coded directly: <= 15 values
    parent, child = first_two_second_moments(tmp_path / "b", ExcpCodec(delta_v=True), trained_states)
    only_child = (parent == 0) & (child > 0)
    assert only_child.sum() > 15
    assert len(torch.unique(child[only_child])) <= 15


def test_delta_v_file_needs_its_parent_second_moment(tmp_path, trained_states):
    chain = CheckpointChain(tmp_path, ExcpCodec(delta_v=True))
    first = chain.append(trained_states[0], 1)
    chain.append(trained_states[1], 2)
    with ContainerReader(chain.path_for(2)) as reader, pytest.raises(SlimlabError, match="parent's second moment"):
        decode_checkpoint(reader, first.reconstructed.get, {}, None)


@pytest.mark.parametrize("settings", [{"mode": "lossless"}, {"mode": "excp-ref"}, {"v_domain": "linear-fp16"}])
def test_delta_v_needs_excp_mode_in_the_log_domain(settings):
    with pytest.raises(SlimlabError, match="delta_v applies"):
        ExcpCodec(delta_v=True, **settings)
