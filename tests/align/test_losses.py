import math

import pytest
import torch

from slimlab.align.losses import dpo_loss, ipo_loss, irepo_loss, soft_dpo_loss
from slimlab.core.errors import SlimlabError

# One pair, chosen row first: policy log-probs (-1, -3), reference (-2, -2), beta = 0.1.
# Implicit rewards: chosen 0.1 * (-1 + 2) = 0.1, rejected 0.1 * (-3 + 2) = -0.1, so dh = 0.2.
POLICY = torch.tensor([-1.0, -3.0])
REFERENCE = torch.tensor([-2.0, -2.0])
Z = torch.tensor([math.log(3.0)])  # p_hat = 0.75 -> logit = log(0.75 / 0.25) = log 3


def test_irepo_loss_is_squared_gap_between_margin_and_logit_target():
    loss, metrics = irepo_loss(POLICY, REFERENCE, Z, beta=0.1)
    assert loss.item() == pytest.approx((0.2 - math.log(3.0)) ** 2, rel=1e-6)  # (0.2 - 1.0986)^2 = 0.8075
    assert metrics["rewards/chosen"] == pytest.approx(0.1)
    assert metrics["rewards/rejected"] == pytest.approx(-0.1)
    assert metrics["rewards/margins"] == pytest.approx(0.2)
    assert metrics["rewards/accuracies"] == 1.0
    assert metrics["irepo/abs_residual"] == pytest.approx(math.log(3.0) - 0.2, rel=1e-6)


def test_irepo_loss_is_zero_when_margin_equals_target_and_gradient_matches_hand_value():
    policy = torch.tensor([-1.0, -3.0], requires_grad=True)
    loss, _ = irepo_loss(policy, REFERENCE, torch.tensor([0.2]), beta=0.1)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    loss, _ = irepo_loss(policy, REFERENCE, torch.tensor([1.2]), beta=0.1)
    loss.backward()
    # dL/dlogp_chosen = 2 (dh - z) * beta = 2 * (-1.0) * 0.1 = -0.2; the rejected row gets +0.2.
    assert policy.grad.tolist() == pytest.approx([-0.2, 0.2])


def test_baseline_losses_match_hand_values():
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert dpo_loss(POLICY, REFERENCE, Z, 0.1)[0].item() == pytest.approx(-math.log(sigmoid(0.2)), rel=1e-6)
    # IPO: (dh / beta - 1 / (2 beta))^2 = (2 - 5)^2 = 9.
    assert ipo_loss(POLICY, REFERENCE, Z, 0.1)[0].item() == pytest.approx(9.0, rel=1e-6)
    expected_soft = -(0.75 * math.log(sigmoid(0.2)) + 0.25 * math.log(sigmoid(-0.2)))
    assert soft_dpo_loss(POLICY, REFERENCE, Z, 0.1)[0].item() == pytest.approx(expected_soft, rel=1e-6)


def test_hard_label_dpo_only_sees_the_sign_of_the_target():
    weak, strong = torch.tensor([0.1]), torch.tensor([3.0])
    assert dpo_loss(POLICY, REFERENCE, weak, 0.1)[0].item() == pytest.approx(dpo_loss(POLICY, REFERENCE, strong, 0.1)[0].item())
    assert irepo_loss(POLICY, REFERENCE, weak, 0.1)[0].item() != pytest.approx(irepo_loss(POLICY, REFERENCE, strong, 0.1)[0].item())


def test_loss_rejects_mismatched_shapes():
    with pytest.raises(SlimlabError, match=r"\[2B\]"):
        irepo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(1), 0.1)
    with pytest.raises(SlimlabError, match="target has shape"):
        irepo_loss(torch.zeros(4), torch.zeros(4), torch.zeros(3), 0.1)
