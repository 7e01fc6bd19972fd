from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from slimlab.core.config import load_config
from slimlab.core.errors import SlimlabError


@dataclass(frozen=True)
class ExampleConfig:
    data: str
    learning_rate: float = 3e-4
    steps: int = 10
    bits: tuple[int, int, int] = (4, 4, 4)
    mode: Literal["excp", "lossless"] = "excp"
    verbose: bool = False
    note: Optional[str] = None


def test_yaml_then_overrides_last_wins(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("data: plays.txt\nlearning_rate: 5e-5\nsteps: 20\n")
    config = load_config(ExampleConfig, path, ["steps=30", "bits=[2,3,4]", "mode=lossless"])
    assert config == ExampleConfig(data="plays.txt", learning_rate=5e-5, steps=30, bits=(2, 3, 4), mode="lossless")


def test_scalar_broadcasts_to_fixed_tuple():
    assert load_config(ExampleConfig, None, ["data=x", "bits=3"]).bits == (3, 3, 3)


def test_unknown_key_is_named_with_suggestion():
    with pytest.raises(SlimlabError, match=r"unknown key 'learning_rat'.*did you mean 'learning_rate'"):
        load_config(ExampleConfig, None, ["data=x", "learning_rat=1"])


@pytest.mark.parametrize("override, message", [
    ("steps=1.5", "'steps' must be an integer"),
    ("verbose=yes please", "'verbose' must be true or false"),
    ("mode=fast", "'mode' must be one of"),
    ("bits=[1,2]", "'bits' must have 3 items"),
])
def test_wrong_type_names_the_key(override, message):
    with pytest.raises(SlimlabError, match=message):
        load_config(ExampleConfig, None, ["data=x", override])


def test_missing_required_value():
    with pytest.raises(SlimlabError, match="missing required value.*data"):
        load_config(ExampleConfig)


def test_config_is_frozen():
    config = load_config(ExampleConfig, None, ["data=x"])
    with pytest.raises(Exception):
        config.steps = 3
