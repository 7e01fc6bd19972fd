import pytest
import torch

from slimlab.core.errors import SlimlabError
from slimlab.par.backbone import load_backbone_weights
from slimlab.par.losses import attribute_loss, positive_ratio
from slimlab.par.model import HEADS, create_model
from slimlab.par.pooling import base_rates, cooccurrence_matrices

BRANCHES = (0, 0, 1, 1, 2, 3)  # six attributes over the four regions


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("regions", ["stripes", "learned"])
def test_every_head_maps_images_to_probabilities(head, regions):
    model = create_model(head, BRANCHES, width=4, branch_dim=8, regions=regions)
    output = model(torch.randn(3, 3, 64, 32))
    assert output["logits"].shape == output["probabilities"].shape == (3, len(BRANCHES))
    assert ((output["probabilities"] >= 0) & (output["probabilities"] <= 1)).all()
    assert model.trunk(torch.randn(2, 3, 64, 32)).shape == (2, 16, 8, 4)  # (B, 4w, H/8, W/8)
    if head == "aap":
        assert output["context"].shape == (3, len(BRANCHES))


@pytest.mark.parametrize("head, options", [("aap", {}), ("global", {}),
                                           ("aap", {"combine": "log_odds", "receptive_field": "local"})])
def test_one_training_step_changes_every_parameter(head, options):
    torch.manual_seed(0)
    labels = torch.randint(0, 2, (8, len(BRANCHES))).float()
    rates = base_rates(labels) if options.get("combine") == "log_odds" else None
    model = create_model(head, BRANCHES, width=4, branch_dim=8, regions="learned", rates=rates, **options,
                         **dict(zip(("given_positive", "given_negative"), cooccurrence_matrices(labels))))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = attribute_loss(model(torch.randn(8, 3, 64, 32)), labels, positive_ratio(labels))
    loss.backward()
    optimizer.step()
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p, before[name])]
    assert not unchanged, f"not trained by one step: {unchanged}"
    if head == "aap":
        assert {"pooling.lambda_logits", "pooling.partner_logits"} <= set(before)


def test_weighted_bce_by_hand():
    labels = torch.tensor([[1.0, 0.0]])
    ratio = torch.tensor([0.25, 0.5])
    logits = torch.zeros(1, 2)  # p = 0.5 everywhere: each term is -log 0.5
    expected = (torch.exp(torch.tensor(0.75)) + torch.exp(torch.tensor(0.5))) / 2 * torch.log(torch.tensor(2.0))
    assert attribute_loss({"logits": logits, "probabilities": torch.sigmoid(logits)}, labels, ratio) == pytest.approx(
        float(expected))


def test_backbone_weights_load_by_path_and_mismatches_are_named(tmp_path):
    source = create_model("global", BRANCHES, width=4)
    torch.save(source.state_dict(), tmp_path / "full.pt")   # keys carry the "trunk." prefix; heads are ignored
    target = create_model("aap", BRANCHES, width=4)
    load_backbone_weights(target.trunk, tmp_path / "full.pt")
    assert all(torch.equal(a, b) for a, b in zip(source.trunk.state_dict().values(), target.trunk.state_dict().values()))
    torch.save(create_model("global", BRANCHES, width=8).trunk.state_dict(), tmp_path / "wide.pt")
    with pytest.raises(SlimlabError, match="stem.0.weight' has shape"):
        load_backbone_weights(target.trunk, tmp_path / "wide.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SlimlabError, match=r"junk\.pt: not a readable backbone weights file \(not a torch.save file"):
        load_backbone_weights(target.trunk, tmp_path / "junk.pt")


def test_unknown_head_and_bad_branch_map_are_errors():
    with pytest.raises(SlimlabError, match="unknown head"):
        create_model("transformer", BRANCHES)
    with pytest.raises(SlimlabError, match="branch numbers"):
        create_model("aap", (0, 7))


def input_rows_seen(model, row: int) -> tuple[int, int]:
    """First and last input row whose pixels change the head-branch features at feature-map row ``row``."""
    images = torch.randn(1, 3, 64, 32, requires_grad=True)
    features = model.branches.convs[0](model.trunk(images))   # (1, C, 8, 4)
    (gradient,) = torch.autograd.grad(features[0, :, row].sum(), images)
    rows = (gradient.abs().sum(dim=(0, 1, 3)) > 0).nonzero().flatten()
    return int(rows.min()), int(rows.max())


@pytest.mark.parametrize("receptive_field, expected", [
    # A 3x3 conv of stride s maps output row k to input rows [s k - 1, s k + 1]. Composing stem (s2), stage 1, stage 2
    # (s2) gives stage-2 row k <- input rows [4k - 11, 4k + 11].
    # wide: stage 3 (3x3, s2, then 3x3) and the 3x3 branch conv give feature row r <- [8r - 31, 8r + 31].
    ("wide", {0: (0, 31), 3: (0, 55), 7: (25, 63)}),
    # local: stage 3 averages stage-2 rows 2r and 2r + 1, then only 1x1 convs: feature row r <- [8r - 11, 8r + 15].
    ("local", {0: (0, 15), 3: (13, 39), 7: (45, 63)}),
])
def test_receptive_field_by_hand(receptive_field, expected):
    model = create_model("branches", BRANCHES, width=4, branch_dim=8, receptive_field=receptive_field).eval()
    assert {row: input_rows_seen(model, row) for row in expected} == expected


def test_local_trunk_keeps_the_feature_map_shape_and_trains():
    model = create_model("aap", BRANCHES, width=4, branch_dim=8, receptive_field="local")
    assert model.trunk(torch.randn(2, 3, 64, 32)).shape == (2, 16, 8, 4)
    with pytest.raises(SlimlabError, match="receptive field must be one of wide, local"):
        create_model("aap", BRANCHES, width=4, receptive_field="global")
