"""Options generated from the config fields: a key listed for a command is a flag, with the field's type, help,
choices and default; absent flags leave the config file's values alone; bad choices are the config's errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.testing import CliRunner

from llmvem.cli.app import app
from llmvem.cli.boundary import guarded
from llmvem.cli.options import COMMAND_FLAGS, config_command, flag_for, flags_command
from llmvem.config import ExperimentConfig

runner = CliRunner()


def _app_with(keys: list[str], seen: list[ExperimentConfig]) -> typer.Typer:
    """A throwaway app whose one command `x` offers ``keys`` and records the resolved config."""
    demo_app = typer.Typer()

    @config_command(demo_app, "x", keys, path="test-x", guard=guarded)
    def x(cfg: ExperimentConfig, out: Path = Path("o")) -> None:
        """A command for the test.

        Examples:
          llmvem x --pif
        """
        seen.append(cfg)
        typer.echo(f"out={out}")

    @demo_app.command("other")
    def other() -> None:  # a second command keeps `x` a subcommand
        """Nothing."""

    return demo_app


KEYS = ["features.pif", "evaluate.inputs.rois", "describe.n_samples", "embed.policy", "data_dir"]


def test_a_listed_key_is_a_typed_flag(tmp_path: Path) -> None:
    seen: list[ExperimentConfig] = []
    args = ["--pif", "--roi", "V1", "--roi", "FFA-1", "--samples", "3", "--policy", "truncate"]
    res = runner.invoke(_app_with(KEYS, seen), ["x", *args, "--data-dir", str(tmp_path), "--out", "p"])
    assert res.exit_code == 0, res.output
    cfg = seen[-1]
    assert cfg.features.pif is True and cfg.evaluate.inputs.rois == ["V1", "FFA-1"] and cfg.describe.n_samples == 3
    assert cfg.embed.policy == "truncate" and cfg.data_dir == tmp_path and "out=p" in res.output
    assert COMMAND_FLAGS["test-x"]["--samples"] == "describe.n_samples"


def test_absent_flags_keep_the_config_file_and_flags_win(tmp_path: Path) -> None:
    seen: list[ExperimentConfig] = []
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("describe:\n  n_samples: 5\nfeatures:\n  pif: true\n")
    demo_app = _app_with(KEYS, seen)
    assert runner.invoke(demo_app, ["x", "-c", str(cfg_file)]).exit_code == 0
    assert seen[-1].describe.n_samples == 5 and seen[-1].features.pif is True
    res = runner.invoke(demo_app, ["x", "-c", str(cfg_file), "--samples", "2", "--no-pif", "--set", "seed=7"])
    assert res.exit_code == 0, res.output
    assert seen[-1].describe.n_samples == 2 and seen[-1].features.pif is False and seen[-1].seed == 7


def test_help_is_the_field_description_with_choices_and_default() -> None:
    res = runner.invoke(_app_with(KEYS, []), ["x", "--help"], env={"COLUMNS": "200"})
    out = " ".join(res.output.split())
    assert res.exit_code == 0 and "Examples" in out
    assert "descriptions per image and prompt [default: 1]" in out
    assert "[chunk|truncate]" in out and "texts longer than the encoder's window [default: chunk]" in out
    assert "keep only these ROIs (empty: all); repeatable" in out and "--pif --no-pif" in out


def test_a_bad_choice_is_the_configs_error_naming_the_key() -> None:
    res = runner.invoke(app, ["evaluate", "rsa", "--metric", "nope"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "evaluate.rsa.metric: Input should be 'correlation', 'euclidean' or 'cosine' (got 'nope')" in res.output


def test_a_field_without_description_cannot_be_a_flag() -> None:
    with pytest.raises(TypeError, match=r"train\.batch_size has no description"):
        flag_for("train.batch_size")


def test_flags_command_passes_the_typed_values_by_key_and_keeps_the_option_order() -> None:
    """``flags_command`` (``llmvem demo``): the generated options stand where ``given`` stands, values by key."""
    seen: list[tuple[str | None, dict[str, Any], str | None]] = []
    flags_app = typer.Typer()

    @flags_command(flags_app, "y", ["describe.n_samples", "progress"], guard=guarded)
    def y(
        name: Annotated[str | None, typer.Argument()] = None, *, given: dict[str, Any], last: str | None = None
    ) -> None:
        """A command for the test."""
        seen.append((name, given, last))

    @flags_app.command("other")
    def other() -> None:
        """Nothing."""

    res = runner.invoke(flags_app, ["y", "a", "--samples", "3", "--last", "z"])
    assert res.exit_code == 0, res.output
    assert seen[-1] == ("a", {"describe.n_samples": 3, "progress": None}, "z")
    assert COMMAND_FLAGS["y"] == {"--samples": "describe.n_samples", "--progress/--no-progress": "progress"}
    opts = [p.opts[0] for p in typer.main.get_command(flags_app).commands["y"].params]  # type: ignore[attr-defined]
    assert opts == ["name", "--samples", "--progress", "--last"]
    assert runner.invoke(flags_app, ["y", "--samples", "x"]).exit_code == 2  # typed: not an integer
