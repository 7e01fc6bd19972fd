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


def test_vote_counts_booleans_and_unread_label_fields_are_refused_with_the_line(tmp_path):
    good = {"prompt": "p", "chosen": "a", "rejected": "b"}
    cases = [({"votes": 2, "n_votes": 2.9}, r"bad.jsonl:2: 'n_votes' must be a whole number of votes, got 2.9"),
             ({"votes": 1.5, "n_votes": 3}, r"bad.jsonl:2: 'votes' must be a whole number of votes, got 1.5"),
             ({"votes": 2}, r"bad.jsonl:2: 'votes' and 'n_votes' go together"),
             ({"n_votes": 5}, r"bad.jsonl:2: 'votes' and 'n_votes' go together"),
             ({"preference_logit": True}, r"bad.jsonl:2: 'preference_logit' must be a number, got true"),
             ({"p_hat": False}, r"bad.jsonl:2: 'p_hat' must be a number, got false"),
             ({"p_hat": "0.9"}, r"bad.jsonl:2: 'p_hat' must be a number, got \"0.9\""),
             ({"votes": True, "n_votes": 1}, r"bad.jsonl:2: 'votes' must be a number, got true"),
             ({"label": 0.2}, r"bad.jsonl:2: field\(s\) label look like a preference label but are not read"),
             ({"Label": 0}, r"bad.jsonl:2: field\(s\) Label look like a preference label"),
             ({"P_hat": 0.3}, r"bad.jsonl:2: field\(s\) P_hat look like a preference label"),
             ({"p_hat": 0.1, "preference_logit": 5.0}, r"bad.jsonl:2: preference_logit 5.0 \(p 0.993\) contradicts "
                                                        "p_hat 0.1")]
    for extra, message in cases:
        with pytest.raises(SlimlabError, match=message):
            read_pairs(write(tmp_path / "bad.jsonl", [good, {**good, **extra}]))
    # other extra columns, common in public preference files, are ignored
    assert read_pairs(write(tmp_path / "extra.jsonl", [{**good, "id": 7, "score_chosen": 8.5}]))[0].p_hat == 1.0
    # whole numbers written as floats are counts all the same: (3 + 0.5) / (4 + 1)
    assert read_pairs(write(tmp_path / "ok.jsonl", [{**good, "votes": 3.0, "n_votes": 4.0}]))[0].p_hat == pytest.approx(0.7)


def test_large_preference_logits_of_either_sign_give_p_hat_without_overflow(tmp_path):
    good = {"prompt": "p", "chosen": "a", "rejected": "b"}
    pairs = read_pairs(write(tmp_path / "big.jsonl", [{**good, "preference_logit": -1000},
                                                      {**good, "preference_logit": 1000},
                                                      {**good, "preference_logit": -2.0}]))
    # sigmoid(-1000) = e^-1000 / (1 + e^-1000) underflows to 0; sigmoid(1000) rounds to 1; the target is kept as given
    assert [pair.p_hat for pair in pairs[:2]] == [0.0, 1.0] and [pair.target for pair in pairs[:2]] == [-1000, 1000]
    assert pairs[2].p_hat == pytest.approx(1 / (1 + math.exp(2.0)))
