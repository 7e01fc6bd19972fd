import pytest
import torch

from slimlab.core.errors import SlimlabError
from slimlab.par.pooling import AttributeAwarePooling, base_rates, cooccurrence_matrices, shuffle_cooccurrence


def hand_matrices():
    given_positive = torch.full((3, 3), 0.5)
    given_negative = torch.full((3, 3), 0.5)
    given_positive[0, 2], given_positive[1, 2], given_positive[2, 0], given_positive[2, 1] = 0.8, 0.3, 0.9, 0.2
    given_negative[0, 2], given_negative[1, 2], given_negative[2, 0], given_negative[2, 1] = 0.1, 0.6, 0.4, 0.5
    return given_positive, given_negative


def test_cooccurrence_is_laplace_smoothed_conditional_probability():
    labels = torch.tensor([[1, 1], [1, 0], [0, 0]])
    given_positive, given_negative = cooccurrence_matrices(labels)
    # n_0 = 2, n_1 = 1, n_01 = 1
    assert given_positive[0, 1] == pytest.approx((1 + 1) / (1 + 2))   # P(a0 | a1)
    assert given_positive[1, 0] == pytest.approx((1 + 1) / (2 + 2))   # P(a1 | a0)
    assert given_positive[0, 0] == pytest.approx((2 + 1) / (2 + 2))
    assert given_negative[0, 1] == pytest.approx((1 + 1) / (2 + 2))   # P(a0 | not a1): 1 of 2
    assert given_negative[1, 0] == pytest.approx((0 + 1) / (1 + 2))   # P(a1 | not a0): 0 of 1


def test_pooling_matches_hand_computation_with_uniform_weights():
    # Branches: attributes 0 and 1 in branch 0, attribute 2 in branch 1, so 0 and 1 see only 2, and 2 sees 0 and 1.
    pooling = AttributeAwarePooling([0, 0, 1], *hand_matrices(), mixing=0.7, partner_weights="uniform")
    own = torch.tensor([[0.2, 0.6, 0.7]])
    pooled, context = pooling(own)
    expected_context = [0.8 * 0.7 + 0.1 * 0.3, 0.3 * 0.7 + 0.6 * 0.3,
                        0.5 * (0.9 * 0.2 + 0.4 * 0.8) + 0.5 * (0.2 * 0.6 + 0.5 * 0.4)]   # 0.59, 0.39, 0.41
    assert context[0].tolist() == pytest.approx(expected_context)
    assert pooled[0].tolist() == pytest.approx([0.7 * o + 0.3 * c for o, c in zip([0.2, 0.6, 0.7], expected_context)])


def test_learned_pooling_starts_at_uniform_weights_and_lambda_07():
    learned = AttributeAwarePooling([0, 0, 1], *hand_matrices())
    fixed = AttributeAwarePooling([0, 0, 1], *hand_matrices(), mixing=0.7, partner_weights="uniform")
    own = torch.rand(5, 3)
    assert torch.allclose(learned(own)[0], fixed(own)[0], atol=1e-6)
    assert learned.partner_logits.numel() == 4  # only cross-branch pairs (0,2), (1,2), (2,0), (2,1) are parameters


def test_context_gradient_reaches_other_branches_unless_detached():
    own = torch.tensor([[0.2, 0.6, 0.7]], requires_grad=True)
    pooling = AttributeAwarePooling([0, 0, 1], *hand_matrices(), mixing=0.7, partner_weights="uniform")
    pooling(own)[0][0, 0].backward()
    assert own.grad[0, 2] == pytest.approx(0.3 * (0.8 - 0.1))  # (1 - lambda) * (C_02 - C'_02)
    own.grad = None
    detached = AttributeAwarePooling([0, 0, 1], *hand_matrices(), mixing=0.7, partner_weights="uniform",
                                     context_detach=True)
    detached(own)[0][0, 0].backward()
    assert own.grad[0, 2] == 0 and own.grad[0, 0] == pytest.approx(0.7)


def test_attribute_without_partners_keeps_its_own_prediction():
    pooling = AttributeAwarePooling([0, 0], torch.full((2, 2), 0.9), torch.full((2, 2), 0.9), mixing=0.5)
    own = torch.tensor([[0.1, 0.3]])
    assert torch.allclose(pooling(own)[0], own)


def test_shuffled_prior_keeps_values_but_moves_every_attribute():
    given_positive, given_negative = cooccurrence_matrices(torch.randint(0, 2, (50, 6)))
    shuffled_positive, shuffled_negative = shuffle_cooccurrence(given_positive, given_negative, seed=3)
    assert torch.equal(shuffled_positive.flatten().sort().values, given_positive.flatten().sort().values)
    assert not torch.equal(shuffled_positive, given_positive) and not torch.equal(shuffled_negative, given_negative)


def test_bad_prior_shape_and_lambda_are_named():
    with pytest.raises(SlimlabError, match="expected \\(3, 3\\)"):
        AttributeAwarePooling([0, 1, 2], torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(SlimlabError, match="lambda"):
        AttributeAwarePooling([0, 1], torch.zeros(2, 2), torch.zeros(2, 2), mixing=1.5)


def test_informative_init_weights_partners_by_how_much_they_shift_the_prior():
    given_positive, given_negative = hand_matrices()
    pooling = AttributeAwarePooling([0, 0, 1], given_positive, given_negative, partner_init="informative")
    weights = pooling.partner_weight_matrix().detach()
    # attribute 2's partners: |0.9 - 0.4| = 0.5 and |0.2 - 0.5| = 0.3 -> weights 0.5 / 0.8 and 0.3 / 0.8 (+1e-3 floor)
    assert weights[2, 0] == pytest.approx(0.501 / 0.802, rel=1e-4) and weights[2, 1] == pytest.approx(0.301 / 0.802, rel=1e-4)
    assert weights[0, 2] == pytest.approx(1.0) and weights[0, 1] == 0  # same-branch partners never count


def test_base_rates_are_laplace_smoothed():
    rates = base_rates(torch.tensor([[1, 0], [1, 1], [0, 0]]))
    assert rates.tolist() == pytest.approx([(2 + 1) / (3 + 2), (1 + 1) / (3 + 2)])  # 0.6, 0.4


def test_log_odds_mix_adds_the_context_evidence_by_hand():
    # Attribute 2 (branch 1) sees partners 0 and 1; attribute 0 sees only partner 2, through C_02 = 0.8, C'_02 = 0.1.
    rates = torch.tensor([0.5, 0.5, 0.2])
    pooling = AttributeAwarePooling([0, 0, 1], *hand_matrices(), mixing=0.5, partner_weights="uniform",
                                    combine="log_odds", rates=rates)
    # own p_2 = 1 gives p~_0 = 0.8 * 1 = 0.8: odds 4; own p_0 = 0.8 (odds 4), base rate 0.5 (odds 1), weight
    # (1 - 0.5) / 0.5 = 1, so the pooled odds are 4 * 4 / 1 = 16 and p^_0 = 16 / 17.
    own = torch.tensor([[0.8, 0.5, 1.0 - 1e-7]])
    pooled, context = pooling(own)
    assert context[0, 0] == pytest.approx(0.8, abs=1e-5)
    assert pooled[0, 0] == pytest.approx(16 / 17, abs=1e-4)
    # Attribute 1 has no own evidence (p = base rate 0.5): p^_1 is the context alone, 0.3 * 1 + 0.6 * 0 = 0.3.
    assert pooled[0, 1] == pytest.approx(0.3, abs=1e-4)


def test_log_odds_weight_follows_lambda_and_context_equal_to_the_base_rate_is_no_evidence():
    rates = torch.tensor([0.5, 0.5, 0.2])
    own = torch.tensor([[0.2, 0.6, 0.7]])
    # lambda 0.8 -> weight 0.25: logit p^_0 = logit 0.2 + 0.25 (logit p~_0 - logit 0.5), p~_0 = 0.59 (hand-computed above)
    pooling = AttributeAwarePooling([0, 0, 1], *hand_matrices(), mixing=0.8, partner_weights="uniform",
                                    combine="log_odds", rates=rates)
    expected = torch.sigmoid(torch.logit(torch.tensor(0.2)) + 0.25 * torch.logit(torch.tensor(0.59)))
    assert pooling(own)[0][0, 0] == pytest.approx(float(expected), abs=1e-5)
    switched_off = AttributeAwarePooling([0, 0, 1], *hand_matrices(), mixing=1.0, partner_weights="uniform",
                                         combine="log_odds", rates=rates)
    assert torch.allclose(switched_off(own)[0], own, atol=1e-6)
    # a context equal to the base rate carries no evidence: the own prediction stands
    no_evidence = AttributeAwarePooling([0, 0, 1], *hand_matrices(), mixing=0.5, partner_weights="uniform",
                                        combine="log_odds", rates=torch.tensor([0.59, 0.39, 0.41]))
    assert torch.allclose(no_evidence(own)[0], own, atol=1e-5)


def test_log_odds_is_refused_without_matching_rates_and_unknown_forms_are_named():
    with pytest.raises(SlimlabError, match="base rates have shape \\(2,\\), expected \\(3,\\)"):
        AttributeAwarePooling([0, 0, 1], *hand_matrices(), combine="log_odds", rates=torch.ones(2))
    with pytest.raises(SlimlabError, match="combine must be"):
        AttributeAwarePooling([0, 0, 1], *hand_matrices(), combine="max")
    # the linear form keeps exactly the keys checkpoints written before the option have
    assert "rates" not in AttributeAwarePooling([0, 0, 1], *hand_matrices()).state_dict()
