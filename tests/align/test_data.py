import json
import math
import shutil

import pytest
from transformers import AutoTokenizer

from slimlab.align.data import read_pairs, read_prompts
from slimlab.core.errors import SlimlabError


def write(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_pair_file_soft_labels_from_each_column(tmp_path):
    path = write(tmp_path / "pairs.jsonl", [
        {"prompt": "p", "chosen": "a", "rejected": "b", "preference_logit": 1.5},
        {"prompt": "p", "chosen": "a", "rejected": "b", "p_hat": 0.9},
        {"prompt": "p", "chosen": "a", "rejected": "b", "votes": 2, "n_votes": 5},
        {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "user", "content": "hi"},
         {"role": "assistant", "content": "hello"}], "rejected": "b"}])
    template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    tokenizer = type("Tokenizer", (), {"chat_template": template})()
    tokenizer.apply_chat_template = lambda messages, tokenize, add_generation_prompt: \
        "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"
    pairs = read_pairs(path, tokenizer)
    assert pairs[0].target == 1.5
    assert pairs[1].target == pytest.approx(math.log(9.0))
    assert pairs[2].p_hat == pytest.approx(2.5 / 6) and pairs[2].target == pytest.approx(math.log(2.5 / 3.5))
    assert pairs[3].prompt == "<user>hi<assistant>" and pairs[3].chosen == "hello"
    assert pairs[3].target == pytest.approx(math.log(49.0))  # no soft label: a hard preference, clipped


def test_pair_and_prompt_files_report_problems_with_file_and_line(tmp_path, tiny_model_dir):
    with pytest.raises(SlimlabError, match=r"pairs.jsonl:1: missing field\(s\) rejected"):
        read_pairs(write(tmp_path / "pairs.jsonl", [{"prompt": "p", "chosen": "a"}]))
    with pytest.raises(SlimlabError, match=r"nan.jsonl:2: the regression target from preference_logit must be finite"):
        read_pairs(write(tmp_path / "nan.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"},
                                                  '{"prompt": "p", "chosen": "a", "rejected": "b", "preference_logit": NaN}']))
    with pytest.raises(SlimlabError, match=r"p_hat must lie in \[0, 1\]"):
        read_pairs(write(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b", "p_hat": 1.5}]))
    with pytest.raises(SlimlabError, match=r"prompts.jsonl:1: missing 'prompt' field"):
        read_prompts(write(tmp_path / "prompts.jsonl", [{"text": "x"}]))
    with pytest.raises(SlimlabError, match="no chat template"):
        read_prompts(write(tmp_path / "chat.jsonl", [{"prompt": [{"role": "user", "content": "hi"}]}]),
                     AutoTokenizer.from_pretrained(tiny_model_dir))
    with pytest.raises(SlimlabError, match="no records"):
        read_prompts(write(tmp_path / "blank.jsonl", ["", "  "]))


def test_unreadable_files_and_odd_labels_are_named(tmp_path):
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00bad\n")
    with pytest.raises(SlimlabError, match=r"binary.jsonl: cannot read as UTF-8"):
        read_pairs(tmp_path / "binary.jsonl")
    (tmp_path / "folder.jsonl").mkdir()
    with pytest.raises(SlimlabError, match=r"folder.jsonl: cannot read"):
        read_prompts(tmp_path / "folder.jsonl")
    with pytest.raises(SlimlabError, match=r"empty.jsonl:1: 'chosen' must be a string or a list"):
        read_pairs(write(tmp_path / "empty.jsonl", [{"prompt": "p", "chosen": [], "rejected": "b"}]))
    row = {"prompt": "p", "chosen": "a", "rejected": "b", "votes": 0, "n_votes": 0}
    with pytest.raises(SlimlabError, match=r"novotes.jsonl:1: no votes \(n_votes 0\) and no prior"):
        read_pairs(write(tmp_path / "novotes.jsonl", [row]), prior=0.0)
    with pytest.raises(SlimlabError, match=r"many.jsonl:1: votes must lie in \[0, n_votes\]; got 7.0 of 5"):
        read_pairs(write(tmp_path / "many.jsonl", [{**row, "votes": 7, "n_votes": 5}]))


def test_outputs_never_replace_the_files_they_were_made_from(tmp_path, tiny_model_dir, capsys):
    from slimlab.cli import main
    samples = write(tmp_path / "samples.jsonl", [{"prompt": "hi", "responses": ["a good day", "a bad day"]}])
    before = samples.read_bytes()
    assert main(["align", "label", str(samples), "--out", str(samples)]) == 2
    assert "would contain the input" in capsys.readouterr().err and samples.read_bytes() == before
    pairs = write(tmp_path / "pairs.jsonl", [{"prompt": "hi", "chosen": "a", "rejected": "b", "p_hat": 0.7}])
    # a run that continues from the model/ an earlier run wrote to the same --out would replace its input
    shutil.copytree(tiny_model_dir, tmp_path / "run" / "model")
    before = (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    assert main(["align", "train", "--model", str(tmp_path / "run" / "model"), "--pairs", str(pairs), "--out",
                 str(tmp_path / "run"), "device=cpu"]) == 2
    assert "would contain the input" in capsys.readouterr().err
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == before
