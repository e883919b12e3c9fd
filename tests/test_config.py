"""Experiment configs: validation with key paths, overrides, dumping."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmvem.config import ExperimentConfig, config_keys, dump_config, load_config
from llmvem.errors import ConfigError


def test_defaults_validate_and_roundtrip(tmp_path: Path) -> None:
    cfg = load_config()
    assert isinstance(cfg, ExperimentConfig)
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg


def test_unknown_key_names_its_path_and_allowed_keys(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epoch: 5\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "train.epoch: unknown key" in msg and "epochs" in msg and "lambda_align" in msg


def test_unknown_top_level_and_nested_keys() -> None:
    with pytest.raises(ConfigError, match="colour: unknown key; allowed keys of the top level"):
        load_config(overrides={"colour": "red"})
    with pytest.raises(ConfigError, match=r"evaluate\.rsa\.metrik: unknown key; allowed keys of evaluate\.rsa"):
        load_config(overrides={"evaluate.rsa.metrik": "cosine"})


def test_bad_values_name_path_and_allowed() -> None:
    with pytest.raises(ConfigError, match=r"train\.lr: .*number.*'fast'"):
        load_config(overrides={"train.lr": "fast"})
    with pytest.raises(ConfigError, match=r"dataset\.name: .*'demo', 'objects92'"):
        load_config(overrides={"dataset.name": "imagenet"})
    with pytest.raises(ConfigError, match=r"train\.epochs: .*greater than or equal to 1"):
        load_config(overrides={"train.epochs": "0"})


def test_overrides_parse_yaml_scalars_and_lists() -> None:
    cfg = load_config(
        overrides={"train.lambda_align": "0.3", "progress": "false", "evaluate.rsa.targets": "[cichy_it]"}
    )
    assert cfg.train.lambda_align == 0.3 and cfg.progress is False and cfg.evaluate.rsa.targets == ["cichy_it"]


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(lst)
    with pytest.raises(ConfigError, match="seed: Input should be a valid integer"):
        load_config(overrides={"seed.x": 1})
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(overrides={"seed": 1, "seed.x": 2})


def test_every_cli_flag_maps_to_a_config_key() -> None:
    from llmvem.cli.app import COMMAND_FLAGS

    keys = set(config_keys())
    assert len(COMMAND_FLAGS) >= 9 and all(COMMAND_FLAGS.values())
    assert {k for per in COMMAND_FLAGS.values() for k in per.values()} <= keys
    dumped = yaml.safe_load(dump_config(load_config()))
    for k in keys:  # every schema key is present in a resolved config
        node = dumped
        for part in k.split("."):
            node = node[part]


def test_shipped_example_configs_validate() -> None:
    root = Path(__file__).resolve().parents[1]
    files = sorted((root / "configs").glob("*.yaml"))
    assert files, "configs/*.yaml missing"
    for f in files:
        load_config(f)
