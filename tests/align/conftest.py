import pytest

from slimlab.align.data import write_jsonl
from slimlab.align.tiny_lm import corpus_lines, line_prompts, pretrain_causal_lm


@pytest.fixture(scope="session")
def corpus():
    return corpus_lines("builtin", 60_000)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, corpus):
    """A real LlamaForCausalLM + byte-level BPE tokenizer, pre-trained for a few seconds on the built-in corpus."""
    folder = tmp_path_factory.mktemp("align") / "tiny_lm"
    return pretrain_causal_lm(corpus, folder, hidden_size=48, layers=1, heads=2, vocab_size=320, steps=80,
                              batch_size=16, max_length=48)


@pytest.fixture(scope="session")
def prompt_file(tmp_path_factory, corpus):
    path = tmp_path_factory.mktemp("align_prompts") / "prompts.jsonl"
    write_jsonl(path, [{"prompt": prompt} for prompt in line_prompts(corpus, 16, words=3)])
    return path


@pytest.fixture(scope="session")
def tiny_config():
    """Builds a small IREPOConfig: tiny_config(model_dir, prompts, out_dir, **overrides)."""
    return _tiny_config


def _tiny_config(model_dir, prompts, out_dir, **overrides):
    from slimlab.align.config import IREPOConfig
    values = dict(policy=str(model_dir), prompts=str(prompts), out_dir=str(out_dir), rounds=2, prompts_per_round=8,
                  max_new_tokens=10, max_length=40, batch_size=4, lr=1e-3, device="cpu")
    values.update(overrides)
    return IREPOConfig(**values)
