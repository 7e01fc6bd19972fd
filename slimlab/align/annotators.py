"""Pluggable annotators: each maps (prompt, K responses) to an empirical preference matrix P[i, j] = P(i beats j).

Four kinds, all returning :class:`Annotation`:

* :class:`RewardAnnotator` - a reward function under exact Bradley-Terry (the oracle of the benchmark);
* :class:`SimulatedRaters` - N noisy raters with a personal bias toward the response shown first; their votes
  give p_hat = (k + a) / (N + 2a);
* :class:`ProbabilityAnnotator` - annotators that return probabilities or logits directly (e.g. AI judges),
  averaged in probability or logit space;
* :class:`PairwiseJudgeAnnotator` - a ``judge(prompt, first, second) -> P(first better)`` callable, asked
  with the two responses in random order and mapped back, so a position bias averages out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from slimlab.align.preferences import aggregate_probabilities, check_matrix, vote_probability
from slimlab.core.errors import SlimlabError

RewardFunction = Callable[[str, str], float]  # (prompt, response) -> scalar reward

# Words the synthetic "true reward" likes: warm or second-person vocabulary, frequent enough in the plays
# (about 0.3 per line) that K samples of one prompt often differ in it, rare enough not to saturate.
DEFAULT_LEXICON = ("love", "loves", "good", "sweet", "fair", "gentle", "noble", "dear", "heart", "lord", "lady",
                   "thee", "thou", "thy", "grace", "honour", "joy", "friend", "kind", "true", "peace", "music",
                   "praises", "forgives")


@dataclass(frozen=True)
class Annotation:
    probability: torch.Tensor        # [K, K] float64, P[i, j] = empirical P(response i beats response j)
    votes: torch.Tensor | None = None  # [K, K] votes for i over j, when the annotator votes
    n_votes: int | None = None


class LexiconReward:
    """r(y) = (# lexicon words in y) - length_penalty * (# words beyond free_words) - empty_penalty if y has no words.

    A programmatic "true reward" for synthetic preference experiments: a policy raises it only by choosing
    lexicon words, not by rambling (words past ``free_words`` cost) nor by falling silent (an empty response
    costs), and since lexicon words are rare in the corpus it is far from saturated.
    """

    def __init__(self, lexicon: Sequence[str] = DEFAULT_LEXICON, length_penalty: float = 0.1, free_words: int = 8,
                 empty_penalty: float = 1.0):
        self.lexicon = frozenset(word.lower() for word in lexicon)
        self.length_penalty, self.free_words, self.empty_penalty = length_penalty, free_words, empty_penalty

    def __call__(self, prompt: str, response: str) -> float:
        words = re.findall(r"[a-z']+", response.lower())
        if not words:
            return -self.empty_penalty
        hits = sum(word in self.lexicon for word in words)
        return hits - self.length_penalty * max(0, len(words) - self.free_words)


def lexicon_reward(response: str, lexicon: Sequence[str] = DEFAULT_LEXICON) -> float:
    return LexiconReward(lexicon)("", response)


def _rewards(reward: RewardFunction, prompt: str, responses: Sequence[str]) -> torch.Tensor:
    values = torch.tensor([float(reward(prompt, response)) for response in responses], dtype=torch.float64)
    if not torch.isfinite(values).all():
        raise SlimlabError(f"reward function returned NaN or infinity for prompt {prompt[:40]!r}")
    return values  # [K]


class RewardAnnotator:
    """Exact Bradley-Terry preferences from a reward: P[i, j] = sigmoid((r_i - r_j) / temperature)."""

    def __init__(self, reward: RewardFunction, temperature: float = 1.0):
        self.reward, self.temperature = reward, temperature

    def __call__(self, prompt: str, responses: Sequence[str]) -> Annotation:
        r = _rewards(self.reward, prompt, responses)
        probability = torch.sigmoid((r[:, None] - r[None, :]) / self.temperature)  # [K, K]
        return Annotation(check_matrix(probability, len(responses), type(self).__name__))


class SimulatedRaters:
    """N raters; rater k prefers the response shown first with prob sigmoid((r_first - r_second + b_k) / tau).

    Biases b_k ~ N(0, bias_std^2) are drawn once (a rater's habit); each comparison is shown in random
    order, so the biases act as noise on the empirical preference rather than a systematic shift.
    """

    def __init__(self, reward: RewardFunction, n_raters: int = 5, bias_std: float = 0.3, temperature: float = 1.0,
                 prior: float = 0.5, seed: int = 0):
        if n_raters < 1:
            raise SlimlabError(f"SimulatedRaters needs at least one rater, got {n_raters}")
        self.reward, self.n_raters, self.temperature, self.prior = reward, n_raters, temperature, prior
        self.generator = torch.Generator().manual_seed(seed)
        self.biases = torch.randn(n_raters, generator=self.generator, dtype=torch.float64) * bias_std  # [N]

    def __call__(self, prompt: str, responses: Sequence[str]) -> Annotation:
        r = _rewards(self.reward, prompt, responses)
        size = len(responses)
        votes = torch.zeros(size, size, dtype=torch.float64)
        for i in range(size):
            for j in range(i + 1, size):
                i_first = torch.rand(self.n_raters, generator=self.generator) < 0.5  # [N] display order
                advantage = torch.where(i_first, r[i] - r[j] + self.biases, r[i] - r[j] - self.biases)
                prefers_i = torch.rand(self.n_raters, generator=self.generator, dtype=torch.float64) < \
                    torch.sigmoid(advantage / self.temperature)
                votes[i, j] = prefers_i.sum()
                votes[j, i] = self.n_raters - votes[i, j]
        probability = vote_probability(votes, self.n_raters, self.prior)
        probability.fill_diagonal_(0.5)
        return Annotation(check_matrix(probability, size, type(self).__name__), votes, self.n_raters)


class ProbabilityAnnotator:
    """Annotators that output P(i beats j) (``kind="probability"``) or its logit (``kind="logit"``) as [K, K]."""

    def __init__(self, annotators: Sequence[Callable[[str, Sequence[str]], torch.Tensor]], kind: str = "probability",
                 aggregate: str = "mean"):
        if kind not in ("probability", "logit"):
            raise SlimlabError(f"ProbabilityAnnotator kind must be probability or logit, got {kind!r}")
        if not annotators:
            raise SlimlabError("ProbabilityAnnotator needs at least one annotator")
        self.annotators, self.kind, self.aggregate = list(annotators), kind, aggregate

    def __call__(self, prompt: str, responses: Sequence[str]) -> Annotation:
        size = len(responses)
        outputs = []
        for index, annotator in enumerate(self.annotators):
            value = torch.as_tensor(annotator(prompt, responses), dtype=torch.float64)
            if self.kind == "logit":
                if value.shape == (size, size) and torch.isfinite(value).all():
                    value = torch.sigmoid(value)
            outputs.append(check_matrix(value, size, f"ProbabilityAnnotator annotator {index}"))
        probability = aggregate_probabilities(torch.stack(outputs), self.aggregate)
        return Annotation(probability.fill_diagonal_(0.5))


class NoisyRewardJudge:
    """A synthetic AI judge: P[i, j] = sigmoid((r_i - r_j) / tau + e_ij), e_ij ~ N(0, noise_std^2) antisymmetric."""

    def __init__(self, reward: RewardFunction, noise_std: float = 0.3, temperature: float = 1.0, seed: int = 0):
        self.reward, self.noise_std, self.temperature = reward, noise_std, temperature
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, prompt: str, responses: Sequence[str]) -> torch.Tensor:
        r = _rewards(self.reward, prompt, responses)
        noise = torch.randn(len(r), len(r), generator=self.generator, dtype=torch.float64) * self.noise_std
        noise = torch.triu(noise, diagonal=1)
        return torch.sigmoid((r[:, None] - r[None, :]) / self.temperature + noise - noise.T)  # [K, K]


class PairwiseJudgeAnnotator:
    """Wraps ``judge(prompt, first, second) -> P(first is better)``; asks each pair in random order."""

    def __init__(self, judge: Callable[[str, str, str], float], seed: int = 0):
        self.judge = judge
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, prompt: str, responses: Sequence[str]) -> Annotation:
        size = len(responses)
        probability = torch.full((size, size), 0.5, dtype=torch.float64)
        for i in range(size):
            for j in range(i + 1, size):
                swap = bool(torch.rand((), generator=self.generator) < 0.5)
                first, second = (j, i) if swap else (i, j)
                value = float(self.judge(prompt, responses[first], responses[second]))
                if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                    raise SlimlabError(f"pairwise judge returned {value!r} for prompt {prompt[:40]!r}; "
                                       "it must return a probability in [0, 1]")
                p_i = 1.0 - value if swap else value
                probability[i, j], probability[j, i] = p_i, 1.0 - p_i
        return Annotation(probability)


def build_annotator(spec: str, reward: RewardFunction, n_raters: int = 5, bias_std: float = 0.3,
                    temperature: float = 1.0, prior: float = 0.5, aggregate: str = "mean", seed: int = 0):
    """The annotators the CLI can name: ``sim:bt`` (votes), ``sim:probs`` (AI probabilities), ``oracle:bt``."""
    if spec == "sim:bt":
        return SimulatedRaters(reward, n_raters, bias_std, temperature, prior, seed)
    if spec == "sim:probs":
        judges = [NoisyRewardJudge(reward, bias_std, temperature, seed * 1000 + index) for index in range(n_raters)]
        return ProbabilityAnnotator(judges, "probability", aggregate)
    if spec == "oracle:bt":
        return RewardAnnotator(reward, temperature)
    raise SlimlabError(f"unknown annotator '{spec}'; choose sim:bt, sim:probs or oracle:bt")
