"""Named CLI flags are taken literally; only ``--set`` values are YAML; bad values are shown bounded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llmvem.cli.app import flag_key, resolve
from llmvem.config import ExperimentConfig
from llmvem.errors import ConfigError


def _resolve(
    config: Path | None, sets: list[str] | None, flags: dict[str, object], command: str = "describe"
) -> ExperimentConfig:
    """``resolve`` with the values of ``command``'s flags, by flag name (as the command line gives them)."""
    return resolve(config, sets, {flag_key(flag, command): value for flag, value in flags.items()})


@pytest.mark.parametrize(
    ("flag", "value", "attr", "command"),
    [
        ("--model", "ok #2", ("describe", "model"), "describe"),  # YAML: a comment, 'ok'
        ("--prompt", ["Describe it: every object #1 to #3"], ("describe", "prompt"), "describe"),  # YAML: a mapping
        ("--base-url", "http://h:8000/v1 #proxy", ("describe", "base_url"), "describe"),
        ("--layer", "9", ("features", "layer"), "features"),  # YAML: the int 9, refused by a str field
        ("--device", "null", ("device",), "describe"),  # YAML: None
        ("--name", "yes", ("name",), "evaluate encoding"),  # YAML 1.1: True
        ("--select-model", "0x1F", ("embed", "select_model"), "embed"),  # YAML: 31
    ],
)
def test_flag_strings_are_literal(flag: str, value: object, attr: tuple[str, ...], command: str) -> None:
    cfg = _resolve(None, None, {flag: value}, command)
    got: object = cfg
    for a in attr:
        got = getattr(got, a)
    assert got == value


def test_cache_dir_with_a_hash_is_not_cut(tmp_path: Path) -> None:
    assert _resolve(None, None, {"--cache-dir": tmp_path / "cc #2"}).cache_dir == tmp_path / "cc #2"


def test_typed_flags_keep_their_types() -> None:
    cfg = _resolve(None, None, {"--samples": 3, "--temperature": 0.5, "--timeout": 2.5})
    assert cfg.describe.n_samples == 3 and cfg.describe.temperature == 0.5 and cfg.describe.timeout_s == 2.5
    assert _resolve(None, None, {"--normalize/--no-normalize": False}, "embed").embed.normalize is False
    cfg = _resolve(None, None, {"--cv": "5", "--features": ["a=x.npy"]}, "evaluate encoding")
    assert cfg.evaluate.encoding.cv == 5 and cfg.evaluate.inputs.features == ["a=x.npy"]


def test_set_values_are_yaml_and_flags_win() -> None:
    cfg = _resolve(None, ["describe.prompt=[a, b]", "train.lr=3e-4", "describe.model=x"], {"--model": "y #1"})
    assert cfg.describe.prompt == ["a", "b"] and cfg.train.lr == 3e-4 and cfg.describe.model == "y #1"


@pytest.mark.parametrize("value", ["inf", ".inf", "nan", "-inf"])
def test_non_finite_numbers_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="finite number"):
        _resolve(None, [f"describe.timeout_s={value}"], {})
    with pytest.raises(ConfigError, match="finite number"):
        _resolve(None, None, {"--timeout": float(value.lstrip("."))})


def test_huge_or_self_referencing_yaml_values_fail_fast_and_short() -> None:
    levels = ["&a0 [x, x, x, x, x, x, x, x, x]"] + [
        f"&a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]" for k in range(1, 14)
    ]
    huge = "[" + ", ".join(levels) + "]"  # 9^13 leaves when expanded
    for value in (huge, "&a [*a, *a]"):
        t0 = time.monotonic()
        with pytest.raises(ConfigError, match=r"describe\.model: Input should be a valid string") as info:
            _resolve(None, [f"describe.model={value}"], {})
        assert time.monotonic() - t0 < 2.0 and len(str(info.value)) < 600


def test_config_file_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_bytes(b"describe:\n  model: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        _resolve(tmp_path / "c.yaml", None, {})
