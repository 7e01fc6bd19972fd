"""A softmax policy over M fixed responses of one prompt: the setting where the optimum is known exactly.

With exact Bradley-Terry preferences p_ij = sigmoid(r_i - r_j), the iREPO target is z_ij = r_i - r_j, and
the loss sum_ij (beta * (log pi_i/ref_i - log pi_j/ref_j) - (r_i - r_j))^2 is zero exactly when
beta * log(pi_i / ref_i) = r_i + c for one constant c, i.e. pi* = ref * exp(r / beta) / Z, the KL-regularised
RLHF optimum. So log(pi*_i / ref_i) = r_i / beta - log sum_j ref_j exp(r_j / beta).
"""

import itertools

import torch

from slimlab.align.preferences import preference_logit, vote_probability
from slimlab.align.tabular import fit_softmax_policy

M, BETA = 6, 0.5


def tabular_problem(seed=0):
    generator = torch.Generator().manual_seed(seed)
    reward = torch.randn(M, generator=generator, dtype=torch.float64) * 0.8
    ref_logits = torch.randn(M, generator=generator, dtype=torch.float64)
    pairs = list(itertools.combinations(range(M), 2))
    first = torch.tensor([i for i, _ in pairs])
    second = torch.tensor([j for _, j in pairs])
    return reward, ref_logits, first, second


def fit(method, reward, ref_logits, first, second, target):
    logps = fit_softmax_policy(method, ref_logits, first, second, target, BETA)
    ref_logps = torch.log_softmax(ref_logits, 0)
    chosen = torch.where(target >= 0, first, second)
    rejected = torch.where(target >= 0, second, first)
    margins = BETA * ((logps - ref_logps)[chosen] - (logps - ref_logps)[rejected])
    return logps, ref_logps, margins


def predicted_log_ratio(reward, ref_logits):
    ref_probability = torch.softmax(ref_logits, 0)
    return reward / BETA - torch.log((ref_probability * torch.exp(reward / BETA)).sum())


def test_irepo_converges_to_reference_times_exp_reward_over_beta():
    reward, ref_logits, first, second = tabular_problem()
    target = preference_logit(torch.sigmoid(reward[first] - reward[second]), clip_eps=1e-12)  # = r_i - r_j
    assert torch.allclose(target, reward[first] - reward[second], atol=1e-9)
    logps, ref_logps, margins = fit("irepo", reward, ref_logits, first, second, target)
    error = (logps - ref_logps - predicted_log_ratio(reward, ref_logits)).abs().max().item()
    assert error < 1e-3
    assert margins.abs().max() <= target.abs().max() + 1e-3  # margins stay bounded by |z|


def test_hard_label_dpo_drives_the_policy_toward_a_deterministic_one():
    reward, ref_logits, first, second = tabular_problem()
    target = preference_logit(torch.sigmoid(reward[first] - reward[second]), clip_eps=1e-12)
    logps, ref_logps, margins = fit("dpo", reward, ref_logits, first, second, target)
    predicted = predicted_log_ratio(reward, ref_logits)
    assert (logps - ref_logps - predicted).abs().max().item() > 1.0  # far from the regularised optimum
    assert logps.exp()[reward.argmax()] > 0.99  # nearly all mass on the single best response
    assert torch.exp(ref_logits.log_softmax(0) + predicted)[reward.argmax()] < 0.99  # ...which pi* does not do
    assert margins.max() > 2 * target.abs().max()  # margins outgrow every target


def test_finite_votes_error_falls_as_votes_grow():
    reward, ref_logits, first, second = tabular_problem()
    exact = torch.sigmoid(reward[first] - reward[second])
    predicted = predicted_log_ratio(reward, ref_logits)
    errors = []
    for n_votes in (1, 25, 625):
        trial_errors = []
        for trial in range(4):
            generator = torch.Generator().manual_seed(100 + trial)
            wins = torch.binomial(torch.full_like(exact, float(n_votes)), exact, generator=generator)
            target = preference_logit(vote_probability(wins, n_votes), clip_eps=0.02)
            logps, ref_logps, _ = fit("irepo", reward, ref_logits, first, second, target)
            trial_errors.append((logps - ref_logps - predicted).abs().max().item())
        errors.append(sum(trial_errors) / len(trial_errors))
    assert errors[0] > errors[1] > errors[2]
