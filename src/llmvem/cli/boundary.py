"""The CLI's error boundary: every error, llmvem's own and click's usage errors alike, is one line on stderr,
``error: MESSAGE``, never wrapped (paths stay whole and copyable at any terminal width), and no traceback.

Exit codes: 2 for a usage or llmvem error, 130 for an interrupt, 1 for failed describe requests (said by the
command); 0 otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup


def _click_errors() -> tuple[type[Exception], ...]:
    """click's own errors (usage errors ...): typer ≥ 0.2x vendors click and derives them from
    ``TyperException``; older typers raise the click package's ``ClickException``."""
    vendored = getattr(typer, "TyperException", None)
    if vendored is not None:
        return (vendored,)
    import click

    return (click.ClickException,)


_CLICK_ERRORS = _click_errors()


#: an error message is cut after this many characters (a message quoting a huge value)
MESSAGE_CHARS = 4000


def print_error(message: str) -> None:
    """Print ``error: MESSAGE`` to stderr on one line, never wrapped (``message`` is not read as markup), cut at
    :data:`MESSAGE_CHARS`."""
    from rich.console import Console
    from rich.markup import escape

    from llmvem.errors import cut

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    console.print(f"[bold red]error:[/bold red] {escape(cut(message, MESSAGE_CHARS))}")


def fail(message: str, code: int = 2) -> NoReturn:
    """:func:`print_error` and exit with ``code``."""
    print_error(message)
    raise typer.Exit(code)


def guarded(fn: Callable[[], Any]) -> Any:
    """Call ``fn`` turning llmvem's own errors into one clear line and exit code 2 (no traceback)."""
    from llmvem.errors import LlmvemError

    try:
        return fn()
    except LlmvemError as exc:
        fail(str(exc))
    except OSError as exc:  # the file system refused (name too long, disk full, permission): name the file
        from llmvem.errors import short_repr

        files = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
        where = f": {' → '.join(short_repr(f) for f in files)}" if files else ""
        fail(f"{exc.strerror or exc}{where}")
    except MemoryError as exc:  # what llmvem's own estimates did not foresee (brain fits check theirs first)
        detail = f" ({exc})" if str(exc) else ""
        fail(f"out of memory{detail}; use fewer stimuli, voxels or features, float32, or a machine with more memory")
    except KeyboardInterrupt:
        fail("interrupted; finished work is kept in the artifact store and a re-run resumes from it", code=130)


def usage_message(exc: Exception) -> str:
    """Click's own error (unknown option, missing argument, bad integer ...) as one line, where typer would draw
    a box wrapped at the terminal's width: ``No such option: --fetures (see llmvem evaluate encoding --help)``."""
    message = " ".join(getattr(exc, "format_message", exc.__str__)().split())
    ctx = getattr(exc, "ctx", None)
    return message + (f" (see {ctx.command_path} --help)" if ctx is not None else "")


class OneLineErrorsGroup(TyperGroup):
    """The top-level command group: click's errors are printed by :func:`usage_message`, on one line."""

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
        standalone_mode: bool = True, **extra: Any,
    ) -> Any:  # fmt: skip
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:  # not standalone: click's errors come here instead of typer's box; typer.Exit(code) returns code
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            print_error("aborted")
            code = 1
        except _CLICK_ERRORS as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":  # that one: typer has printed the help already
                print_error(usage_message(exc))
            code = getattr(exc, "exit_code", 2)
        sys.exit(code if isinstance(code, int) else 0)
