"""ParTrainConfig ranges: a bad number is refused by name when the config is built, not deep inside torch."""

import pytest

from slimlab.cli import main as cli_main
from slimlab.core.config import load_config
from slimlab.core.errors import SlimlabError
from slimlab.par.config import ParTrainConfig


@pytest.mark.parametrize("override, message", [
    ("learning_rate=-0.001", "'learning_rate' must be > 0, got -0.001"),    # Adam: raw ValueError
    ("weight_decay=-1", "'weight_decay' must be >= 0, got -1.0"),
    ("threads=-1", "'threads' must be >= 0 .*, got -1"),                    # set_num_threads: raw RuntimeError
    ("epochs=0", "'epochs' must be >= 1, got 0"),
    ("batch_size=0", "'batch_size' must be >= 1, got 0"),
    ("stop_after_epochs=-2", "'stop_after_epochs' must be >= 0 .*, got -2"),
    ("evaluate_every=-1", "'evaluate_every' must be >= 0 .*, got -1"),
    ("image_height=4", "'image_height' must be >= 8 .*, got 4"),
    ("width=0", "'width' must be >= 1, got 0"),
    ("attribute_to_branch=[0,4]", "'attribute_to_branch' entries must be 0 .*, got 4"),
    ("combine=max", "'combine' must be one of linear, log_odds, got 'max'"),
    ("receptive_field=global", "'receptive_field' must be one of wide, local, got 'global'"),
])
def test_bad_numbers_are_named(override, message):
    with pytest.raises(SlimlabError, match=f"config {message}"):
        load_config(ParTrainConfig, None, [override])


def test_cli_prints_the_named_error_and_help_anywhere(capsys):
    assert cli_main(["par", "train", "--threads", "-1"]) == 2
    assert "slimlab: error: config 'threads' must be >= 0" in capsys.readouterr().err
    assert cli_main(["par", "train", "--epochs", "1", "--help"]) == 0  # --help after options, not a missing value
    printed = capsys.readouterr().out
    assert "fields (defaults):" in printed and "--learning-rate" in printed
