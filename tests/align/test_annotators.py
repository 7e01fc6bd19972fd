import math

import pytest
import torch

from slimlab.align.annotators import (DEFAULT_LEXICON, LexiconReward, PairwiseJudgeAnnotator, ProbabilityAnnotator,
                                      RewardAnnotator, SimulatedRaters, build_annotator)
from slimlab.align.preferences import (aggregate_probabilities, choose_pairs, preference_logit, vote_probability,
                                       zermelo_rank)
from slimlab.core.errors import SlimlabError

RESPONSES = ["a", "bb", "ccc", "dddd"]


def length_reward(prompt, response):  # r = number of characters: a transparent hidden reward
    return float(len(response))


def test_vote_probability_and_clipped_logit_match_hand_values():
    # (k + 0.5) / (N + 1): 5 of 5 -> 5.5 / 6; 1 of 1 -> 0.75 (logit log 3); 0 of 5 -> 0.5 / 6.
    assert vote_probability(torch.tensor([5.0, 1.0, 0.0]), torch.tensor([5, 1, 5])).tolist() == pytest.approx([5.5 / 6, 0.75, 0.5 / 6])
    assert preference_logit(torch.tensor(0.75)).item() == pytest.approx(math.log(3.0))
    # 125 of 125 -> 125.5 / 126 = 0.996, clipped to 0.98, logit log(49) = 3.89.
    assert preference_logit(vote_probability(125.0, 125)).item() == pytest.approx(math.log(49.0))
    with pytest.raises(SlimlabError, match="vote counts"):
        vote_probability(6.0, 5)


def test_annotator_probabilities_aggregate_by_mean_or_logit_mean():
    stacked = torch.tensor([0.9, 0.5])
    assert aggregate_probabilities(stacked, "mean").item() == pytest.approx(0.7)
    # logit mean: sigmoid((log 9 + 0) / 2) = sigmoid(log 3) = 0.75
    assert aggregate_probabilities(stacked, "logit_mean").item() == pytest.approx(0.75)


def test_simulated_rater_votes_are_consistent_and_converge_to_bradley_terry():
    few = SimulatedRaters(length_reward, n_raters=5, bias_std=0.3, seed=1)(prompt="p", responses=RESPONSES)
    assert torch.all(few.votes + few.votes.T == 5 * (1 - torch.eye(4)))  # every rater votes once per pair
    expected = (few.votes + 0.5) / 6
    off = ~torch.eye(4, dtype=torch.bool)
    assert torch.allclose(few.probability[off], expected[off])
    many = SimulatedRaters(length_reward, n_raters=20000, bias_std=0.3, seed=2)("p", RESPONSES)
    r = torch.arange(1.0, 5.0, dtype=torch.float64)
    exact = torch.sigmoid(r[:, None] - r[None, :])
    # Random display order turns the raters' position biases into noise that averages to zero... almost:
    # E[sigmoid(d + b)] is pulled toward 1/2 by b's spread, by at most ~0.02 for std 0.3.
    assert (many.probability - exact)[off].abs().max() < 0.03


def test_reward_annotator_is_exact_bradley_terry_and_zermelo_recovers_strengths():
    annotation = RewardAnnotator(length_reward)("p", RESPONSES)
    r = torch.arange(1.0, 5.0, dtype=torch.float64)
    assert torch.allclose(annotation.probability, torch.sigmoid(r[:, None] - r[None, :]))
    strengths = zermelo_rank(annotation.probability)
    expected = torch.exp(r - r.mean())  # BT strengths exp(r), normalised to geometric mean 1
    assert torch.allclose(strengths, expected, rtol=1e-4)
    pair = choose_pairs(annotation.probability, RESPONSES, "best_worst")
    assert (pair[0].chosen, pair[0].rejected) == (3, 0)
    assert pair[0].probability == pytest.approx(1 / (1 + math.exp(-3)))
    assert len(choose_pairs(annotation.probability, RESPONSES, "all")) == 6


def test_pairwise_judge_shuffles_positions_and_maps_back():
    calls = []

    def judge(prompt, first, second):
        calls.append((first, second))
        return 1 / (1 + math.exp(-(len(first) - len(second))))

    annotation = PairwiseJudgeAnnotator(judge, seed=0)("p", RESPONSES)
    r = torch.arange(1.0, 5.0, dtype=torch.float64)
    assert torch.allclose(annotation.probability, torch.sigmoid(r[:, None] - r[None, :]))
    assert any(len(a) > len(b) for a, b in calls) and any(len(a) < len(b) for a, b in calls)  # both orders asked


def test_probability_annotator_accepts_logits_and_rejects_nan_or_wrong_shape():
    r = torch.arange(1.0, 5.0, dtype=torch.float64)
    as_logits = ProbabilityAnnotator([lambda p, ys: r[:, None] - r[None, :]], kind="logit")("p", RESPONSES)
    assert torch.allclose(as_logits.probability, torch.sigmoid(r[:, None] - r[None, :]))
    with pytest.raises(SlimlabError, match="NaN"):
        ProbabilityAnnotator([lambda p, ys: torch.full((4, 4), float("nan"))])("p", RESPONSES)
    with pytest.raises(SlimlabError, match=r"shape \(3, 3\)"):
        ProbabilityAnnotator([lambda p, ys: torch.full((3, 3), 0.5)])("p", RESPONSES)
    with pytest.raises(SlimlabError, match="NaN"):
        RewardAnnotator(lambda p, y: float("nan"))("p", RESPONSES)
    with pytest.raises(SlimlabError, match="unknown annotator"):
        build_annotator("rules:vibes", length_reward)


def test_lexicon_reward_counts_lexicon_words_minus_length_beyond_free_words():
    reward = LexiconReward(DEFAULT_LEXICON, length_penalty=0.1, free_words=3, empty_penalty=1.0)
    assert reward("", "my sweet love, good night") == pytest.approx(3 - 0.1 * (5 - 3))
    assert reward("", "sweet love") == pytest.approx(2.0)
    assert reward("", " ...") == -1.0
