"""CLI options generated from the config schema: a flag is written once, on its config field.

A command that configures a run lists the dotted config keys it offers; the field of each key gives its option:
the name (``--`` + the field name, ``_`` → ``-``, or the field's ``cli`` extra: :func:`llmvem.config.cli`), the type
typer parses, the help (the field's ``description``), the choices of a ``Literal`` (shown as the metavar) and the
default shown in the help. The option's own default is ``None`` ("not typed"), so a config file's value stands
unless the flag is given. Values stay literal (a string is the string typed); only ``--set key=value`` is YAML.
Choices are checked by the config's validation, like a ``--set`` or YAML value, so a bad value gets the same
message (the key path and the allowed values) however it was given.

>>> f = flag_for("describe.n_samples")
>>> f.name, f.key, f.help
('--samples', 'describe.n_samples', 'descriptions per image and prompt')
>>> flag_for("progress").name, flag_for("embed.policy").metavar
('--progress/--no-progress', '[chunk|truncate]')
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

import typer

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

    from llmvem.config import ExperimentConfig

#: command path ("evaluate encoding", "describe") → {flag name → config key}; filled by :func:`config_command`
COMMAND_FLAGS: dict[str, dict[str, str]] = {}


@dataclass(frozen=True)
class Flag:
    """The CLI option of one config key."""

    key: str  #: dotted config key (``describe.n_samples``)
    opts: tuple[str, ...]  #: click declarations: ``("--features", "-f")``, ``("--progress/--no-progress",)``
    kind: Any  #: the type typer parses: str, int, float, bool, Path or list[str]
    help: str
    metavar: str | None
    shown_default: str | None  #: the config default, as the help shows it

    @property
    def name(self) -> str:
        """The flag as users and tests name it: ``--samples``, ``--normalize/--no-normalize``."""
        return self.opts[0]

    @property
    def param(self) -> str:
        """The Python parameter of the generated command function."""
        return "key__" + self.key.replace(".", "__")

    def option(self) -> Any:
        """The ``typer.Option`` (its help ends with the config default; not given = ``None``)."""
        shown = f" \\[default: {self.shown_default}]" if self.shown_default is not None else ""  # \[: not markup
        return typer.Option(*self.opts, help=self.help + shown, metavar=self.metavar, show_default=False)

    def annotation(self) -> Any:
        """``Annotated[kind | None, typer.Option(...)]``: the parameter of a generated command."""
        return Annotated[self.kind | None, self.option()]


def config_field(key: str) -> FieldInfo:
    """The pydantic field of a dotted config key (``evaluate.encoding.cv``); a missing key is a ``KeyError``."""
    from pydantic import BaseModel

    from llmvem.config import ExperimentConfig

    model: type[BaseModel] = ExperimentConfig
    *sections, leaf = key.split(".")
    for part in sections:
        model = model.model_fields[part].annotation  # type: ignore[assignment]
    return model.model_fields[leaf]


def flag_for(key: str) -> Flag:
    """The option of config key ``key``, from its field (see the module docstring)."""
    field = config_field(key)
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    cli: dict[str, Any] = extra.get("cli", {})  # type: ignore[assignment]
    kind, metavar = _cli_type(field.annotation)
    name = cli.get("flag") or "--" + key.rsplit(".", 1)[-1].replace("_", "-")
    if kind is bool:
        name = f"{name}/--no-{name[2:]}"
    if not field.description:
        raise TypeError(f"config key {key} has no description: it is the help of {name}")
    help_text = field.description + ("; repeatable" if kind == list[str] else "")
    shown = _shown_default(field, name) if cli.get("show_default", True) else None
    return Flag(key, (name, *([cli["short"]] if cli.get("short") else [])), kind, help_text, metavar, shown)


def _cli_type(annotation: Any) -> tuple[Any, str | None]:
    """(type typer parses, metavar) of a field's annotation: ``X | None`` → X; any list → list[str]; a Literal →
    str with its choices as metavar; a union of a Literal and int (``evaluate.encoding.cv``) → str."""
    union = get_origin(annotation) in (Union, types.UnionType)
    args = [a for a in get_args(annotation) if a is not type(None)] if union else [annotation]
    args = [get_args(a)[0] if get_origin(a) is Annotated else a for a in args]
    if any(get_origin(a) is list for a in args):
        return list[str], None
    if len(args) == 1 and get_origin(args[0]) is Literal:
        return str, "[" + "|".join(str(v) for v in get_args(args[0])) + "]"
    if len(args) == 1 and args[0] in (str, int, float, bool, Path):
        return args[0], None
    if all(get_origin(a) is Literal or a in (str, int) for a in args):
        return str, None
    raise TypeError(f"no CLI option type for a field of type {annotation!r}")


def _shown_default(field: FieldInfo, name: str) -> str | None:
    """The config default as the help shows it (``None``: not shown — no default, or an empty list)."""
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    if value is None or value == [] or value == "":
        return None
    if isinstance(value, bool):
        on, off = name.split("/")
        return (on if value else off).removeprefix("--")
    return str(value)


def option(key: str) -> Any:
    """The ``typer.Option`` of one config key, for a hand-written signature that passes the value on itself:
    ``data_dir: Annotated[Path | None, option("data_dir")] = None`` (``llmvem datasets``)."""
    return flag_for(key).option()


def resolve(config: Path | None, sets: Sequence[str] | None, values: Mapping[str, Any]) -> ExperimentConfig:
    """Config file + ``--set`` overrides (YAML values) + flag values by config key (literal; flags win), validated.

    Raises:
        ConfigError: a ``--set`` without ``=``, or an invalid config (the message names each bad key).
    """
    from llmvem.config import literal_overrides, load_config, parse_sets

    return load_config(config, parse_sets(sets), literal=literal_overrides(values))


def flag_key(flag: str, command: str) -> str:
    """The config key that ``flag`` of ``command`` ("features", "evaluate encoding") sets."""
    return COMMAND_FLAGS[command][flag]


_KW = inspect.Parameter.KEYWORD_ONLY
_CONFIG_OPTION = Annotated[
    Path | None, typer.Option("--config", "-c", help="experiment YAML config", show_default=False)
]
_CONFIG_ARGUMENT = Annotated[Path, typer.Argument(help="experiment YAML config", show_default=False)]
_SET = Annotated[
    list[str] | None, typer.Option("--set", help="override any config key: --set train.lr=3e-4 (repeatable)")
]


def config_command(
    group: typer.Typer,
    name: str,
    keys: Sequence[str],
    *,
    path: str | None = None,
    config_argument: bool = False,
    guard: Callable[[Callable[[], Any]], Any],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``body(cfg, **own)`` as command ``name`` of ``group``, with an option per config key of ``keys``.

    ``own`` are the body's other parameters (arguments, ``--out``: not settings of the run), declared as usual.
    The command also takes ``--config/-c FILE`` (or a CONFIG argument, ``config_argument``) and ``--set``; it
    resolves the config (:func:`resolve`) and calls ``body`` inside ``guard`` (the CLI's one-line error boundary).
    ``path`` names the command in :data:`COMMAND_FLAGS` (default ``name``).
    """
    flags = _flags(path or name, keys)

    def register(body: Callable[..., Any]) -> Callable[..., Any]:
        own = _own(body, 1)
        config = (
            inspect.Parameter("config", _KW, annotation=_CONFIG_ARGUMENT)
            if config_argument
            else inspect.Parameter("config", _KW, default=None, annotation=_CONFIG_OPTION)
        )
        generated = _generated(flags)
        params = [config, *own, *generated] if config_argument else [*own, *generated, config]
        params.append(inspect.Parameter("set_", _KW, default=None, annotation=_SET))

        def call(given: Mapping[str, Any]) -> Any:
            mine = {p.name: given[p.name] for p in own}
            values = {f.key: given[f.param] for f in flags}
            return guard(lambda: body(resolve(given["config"], given["set_"], values), **mine))

        _declare(group, name, body, params, call)
        return body

    return register


def flags_command(
    group: typer.Typer,
    name: str,
    keys: Sequence[str],
    *,
    guard: Callable[[Callable[[], Any]], Any],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``body(*before, given, *after)`` as command ``name`` of ``group``, with an option per config key of
    ``keys`` standing where ``given`` stands; ``body`` gets ``given`` = {config key: the typed value, ``None`` when
    not given} and resolves no config itself (``llmvem demo``: its study does). Called inside ``guard``."""
    flags = _flags(name, keys)

    def register(body: Callable[..., Any]) -> Callable[..., Any]:
        names = list(inspect.signature(body).parameters)
        at = names.index("given")
        own = [p for p in _own(body, 0) if p.name != "given"]

        def call(values: Mapping[str, Any]) -> Any:
            mine = {p.name: values[p.name] for p in own}
            given = {f.key: values[f.param] for f in flags}
            return guard(lambda: body(given=given, **mine))

        _declare(group, name, body, [*own[:at], *_generated(flags), *own[at:]], call)
        return body

    return register


def _flags(command: str, keys: Sequence[str]) -> list[Flag]:
    """The flags of ``keys``, recorded in :data:`COMMAND_FLAGS` under ``command``."""
    flags = [flag_for(k) for k in keys]
    COMMAND_FLAGS[command] = {f.name: f.key for f in flags}
    return flags


def _own(body: Callable[..., Any], skip: int) -> list[inspect.Parameter]:
    """The body's own parameters after the first ``skip`` ones, keyword-only, annotations evaluated."""
    return [_evaluated(p, body) for p in list(inspect.signature(body).parameters.values())[skip:]]


def _generated(flags: Sequence[Flag]) -> list[inspect.Parameter]:
    """One keyword-only parameter per flag (default ``None``: not given)."""
    return [inspect.Parameter(f.param, _KW, default=None, annotation=f.annotation()) for f in flags]


def _declare(
    group: typer.Typer, name: str, body: Callable[..., Any], params: list[inspect.Parameter], call: Callable[..., Any]
) -> None:
    """Register command ``name`` of ``group``: the signature ``params`` (typer reads the options from it), ``body``'s
    name and docstring (the help), and ``call({parameter: value})`` as what it does."""

    def command(**given: Any) -> Any:
        return call(given)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__, command.__doc__ = body.__name__, body.__doc__
    group.command(name)(command)


def _evaluated(param: inspect.Parameter, fn: Callable[..., Any]) -> inspect.Parameter:
    """``param`` keyword-only, its annotation evaluated in ``fn``'s module (``from __future__ import annotations``
    leaves strings)."""
    ann = param.annotation
    if isinstance(ann, str):
        ann = eval(ann, fn.__globals__)  # the CLI module's own source text
    return param.replace(kind=_KW, annotation=ann)
