import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from slimlab.align.annotators import Annotation, LexiconReward, SimulatedRaters
from slimlab.align.data import write_jsonl
from slimlab.align.loop import align_policy, annotate_pairs, run_iterate, run_train, save_policy
from slimlab.align.policy import load_policy, sequence_logps_batched
from slimlab.cli import main as cli_main
from slimlab.core.errors import SlimlabError


def test_iterate_writes_rounds_metrics_plots_and_a_loadable_model(tiny_model_dir, prompt_file, tmp_path, tiny_config):
    cfg = tiny_config(tiny_model_dir, prompt_file, tmp_path / "run")
    model_dir = run_iterate(cfg)
    model = AutoModelForCausalLM.from_pretrained(model_dir)  # plain transformers, nothing slimlab-specific
    assert type(model).__name__ == "LlamaForCausalLM"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rounds = [row for row in rows if "iteration" in row]
    assert [row["iteration"] for row in rounds] == [0, 1]
    assert all(row["pairs"] > 0 and "irepo/abs_residual" in row for row in rounds)
    assert (tmp_path / "run" / "plots" / "loss.png").stat().st_size > 0
    pairs = [json.loads(line) for line in (tmp_path / "run/rounds/round_1/pairs.jsonl").read_text().splitlines()]
    assert {"prompt", "chosen", "rejected", "p_hat", "preference_logit"} <= set(pairs[0])


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_save_load_round_trip_reproduces_the_aligned_policy(tiny_model_dir, prompt_file, tmp_path, lora_rank, tiny_config):
    # Under LoRA the "sft" reference is the adapter-disabled base model (no second copy in memory).
    cfg = tiny_config(tiny_model_dir, prompt_file, tmp_path, rounds=1, lora_rank=lora_rank, lr=1e-2,
                      reference="sft" if lora_rank else "previous")
    model, tokenizer = load_policy(cfg.policy, torch.device("cpu"))
    prompts = ["HAMLET. The king", "VIOLA. Fair lady"]
    annotator = SimulatedRaters(LexiconReward(), seed=0)
    model = align_policy(model, tokenizer, prompts * 4, annotator, cfg)
    responses = [" loves the crown.", " speaks of sweet music!"]
    before = sequence_logps_batched(model, tokenizer, prompts, responses)
    original, _ = load_policy(cfg.policy, torch.device("cpu"))
    assert not torch.allclose(before, sequence_logps_batched(original, tokenizer, prompts, responses))  # it trained
    folder = save_policy(model, tokenizer, tmp_path, lora=lora_rank > 0)
    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    after = sequence_logps_batched(reloaded, AutoTokenizer.from_pretrained(folder), prompts, responses)
    assert torch.allclose(before, after, atol=1e-4)
    if lora_rank:
        assert (tmp_path / "adapter" / "adapter_config.json").exists()


def test_train_on_trl_pairs_moves_margins_toward_soft_targets(tiny_model_dir, tmp_path, tiny_config):
    rows = [{"prompt": "HAMLET. The king", "chosen": " loves sweet music.", "rejected": " curses the night.", "p_hat": 0.9},
            {"prompt": "LEAR. My lord", "chosen": " forgives thy heart.", "rejected": " mocks a sword.", "votes": 4, "n_votes": 5},
            {"prompt": "VIOLA. Good sir", "chosen": " praises her grace!", "rejected": " fears the sea."}]
    write_jsonl(tmp_path / "pairs.jsonl", rows)
    cfg = tiny_config(tiny_model_dir, "", tmp_path / "run", pairs=str(tmp_path / "pairs.jsonl"), epochs=40, lr=5e-3, beta=0.5)
    folder = run_train(cfg)
    policy, tokenizer = load_policy(str(folder), torch.device("cpu"))
    reference, _ = load_policy(str(tiny_model_dir), torch.device("cpu"))
    prompts = [row["prompt"] for row in rows] * 2
    responses = [row["chosen"] for row in rows] + [row["rejected"] for row in rows]
    ratio = sequence_logps_batched(policy, tokenizer, prompts, responses) - sequence_logps_batched(reference, tokenizer, prompts, responses)
    margins = 0.5 * (ratio[:3] - ratio[3:])
    # Targets: logit(0.9) = 2.197, logit(4.5 / 6) = log 3 = 1.099, hard label -> logit(0.98) = 3.892.
    targets = torch.tensor([2.1972, 1.0986, 3.8918])
    assert (margins - targets).abs().max() < 0.6
    assert margins.argsort().tolist() == [1, 0, 2]  # ordered like the soft targets


def test_cli_iterate_runs_and_reports_bad_input(tiny_model_dir, prompt_file, tmp_path, capsys):
    status = cli_main(["align", "iterate", "--model", str(tiny_model_dir), "--prompts", str(prompt_file),
                       "--out", str(tmp_path / "cli"), "prompts_per_round=4", "max_new_tokens=8",
                       "max_length=40", "method=soft_dpo", "reference=sft", "rounds=2", "--device", "cpu"])
    assert status == 0 and (tmp_path / "cli" / "model" / "config.json").exists()
    assert cli_main(["align", "iterate", "--model", str(tiny_model_dir), "--prompts", str(prompt_file),
                     "--out", str(tmp_path / "bad"), "betta=0.1"]) == 2
    assert "did you mean 'beta'" in capsys.readouterr().err


def test_bad_inputs_give_clear_errors_and_no_model_folder(tiny_model_dir, prompt_file, tmp_path, tiny_config):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "fine"}\n{"prompt": "oops"\n')
    with pytest.raises(SlimlabError, match=r"broken.jsonl:2: not valid JSON"):
        run_iterate(tiny_config(tiny_model_dir, broken, tmp_path / "a"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"prompt": "fine"}\n{"prompt": "   "}\n')
    with pytest.raises(SlimlabError, match=r"empty.jsonl:2: empty prompt"):
        run_iterate(tiny_config(tiny_model_dir, empty, tmp_path / "b"))
    with pytest.raises(SlimlabError, match="does not fit the model's"):
        run_iterate(tiny_config(tiny_model_dir, prompt_file, tmp_path / "c", max_length=10_000))
    with pytest.raises(SlimlabError, match="exceeds max_length"):
        run_iterate(tiny_config(tiny_model_dir, prompt_file, tmp_path / "d", max_length=12, max_new_tokens=10))
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_tokenizer_without_pad_token_is_refused_unless_eos_padding_is_allowed(tiny_model_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer.pad_token = None
    model.config.pad_token_id = None
    model.save_pretrained(tmp_path / "nopad")
    tokenizer.save_pretrained(tmp_path / "nopad")
    with pytest.raises(SlimlabError, match="no pad token"):
        load_policy(str(tmp_path / "nopad"), torch.device("cpu"))
    _, padded = load_policy(str(tmp_path / "nopad"), torch.device("cpu"), pad_with_eos=True)
    assert padded.pad_token_id == padded.eos_token_id


def test_annotator_returning_nan_or_wrong_shape_stops_the_round(tiny_model_dir, prompt_file, tmp_path, tiny_config):
    cfg = tiny_config(tiny_model_dir, prompt_file, tmp_path / "run")
    group = [["a", "b", "c", "d"]]
    with pytest.raises(SlimlabError, match="NaN"):
        annotate_pairs(["p"], group, lambda p, ys: Annotation(torch.full((4, 4), float("nan"))), cfg)
    with pytest.raises(SlimlabError, match=r"shape \(2, 2\)"):
        annotate_pairs(["p"], group, lambda p, ys: Annotation(torch.full((2, 2), 0.5)), cfg)
    with pytest.raises(SlimlabError, match="expected an Annotation"):
        annotate_pairs(["p"], group, lambda p, ys: [0.5], cfg)
    with pytest.raises(SlimlabError, match="NaN"):
        run_iterate(cfg, annotator=lambda p, ys: Annotation(torch.full((4, 4), float("nan"))))
    assert list(tmp_path.iterdir()) == []  # no run folder, no temporary one


def test_cli_sample_label_train_pipeline(tiny_model_dir, prompt_file, tmp_path):
    common = ["max_new_tokens=8", "max_length=40", "--device", "cpu"]
    assert cli_main(["align", "sample", "--model", str(tiny_model_dir), "--prompts", str(prompt_file), "-k", "3",
                     "--out", str(tmp_path / "samples.jsonl"), *common]) == 0
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 16 and all(len(row["responses"]) == 3 for row in samples)
    assert cli_main(["align", "label", str(tmp_path / "samples.jsonl"), "--annotator", "sim:probs",
                     "--out", str(tmp_path / "pairs.jsonl"), "pairs_mode=all"]) == 0
    pairs = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert pairs and all(row["p_hat"] >= 0.5 for row in pairs)  # "all" orients each pair toward its winner
    assert cli_main(["align", "train", "--model", str(tiny_model_dir), "--pairs", str(tmp_path / "pairs.jsonl"),
                     "--out", str(tmp_path / "run"), "--beta", "0.2", *common]) == 0
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
