"""iREPO: align causal LMs by regressing implicit-reward differences onto the logit of empirical preferences.

Public names: :func:`irepo_loss` and the baseline losses, the annotators, :func:`zermelo_rank`, and the
end-to-end loops :func:`run_iterate` (sample, label, train for several rounds) and :func:`run_train`
(one round on a prompt/chosen/rejected file).
"""

from slimlab.align.annotators import (PairwiseJudgeAnnotator, ProbabilityAnnotator, RewardAnnotator,
                                      SimulatedRaters, lexicon_reward)
from slimlab.align.config import IREPOConfig
from slimlab.align.losses import dpo_loss, ipo_loss, irepo_loss, preference_loss, soft_dpo_loss
from slimlab.align.preferences import preference_logit, vote_probability, zermelo_rank

__all__ = ["IREPOConfig", "irepo_loss", "dpo_loss", "ipo_loss", "soft_dpo_loss", "preference_loss",
           "preference_logit", "vote_probability", "zermelo_rank", "RewardAnnotator", "SimulatedRaters",
           "ProbabilityAnnotator", "PairwiseJudgeAnnotator", "lexicon_reward"]
