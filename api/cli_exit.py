"""Exit codes of the ``labwitness`` command: one rule, kept here, used by every command.

    0  done
    1  the operation failed (storage or index unreachable, a camera that did not
       answer, a package that is not genuine, a file that could not be written)
    2  invalid arguments or configuration (a malformed camera URL or id, an
       unknown area, a retention below six months); Typer's usage errors too
    3  refused: a safety check declined to act and changed nothing

Check commands (``health``, ``retention ...``, ``report compliance --check``)
answer with what they found on the same scale read as levels — 0 ok, 1 warning,
2 critical, 3 refused — and, as their 1 already means "warning", 4 when the
check itself could not run.

The class of a :class:`~labwitness.errors.LabwitnessError` decides its code
(:func:`exit_code`); :class:`CliGroup` applies it to whatever a command lets
escape, so no command maps errors by hand.
"""

from __future__ import annotations

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from labwitness.errors import ConfigError, JobRefusedError, LabwitnessError, ValidationError

OK, FAILED, INVALID, REFUSED = 0, 1, 2, 3
COULD_NOT_RUN = 4  # check commands only

HELP = ("退出码 / exit codes: 0 完成 / done · 1 操作失败 / the operation failed · "
        "2 参数或配置无效 / invalid arguments or configuration · 3 被拒绝执行 / refused. "
        "检查类命令 / check commands (health, retention, report --check): "
        "0 ok · 1 warning · 2 critical · 3 refused · 4 could not run.")

_stderr = Console(stderr=True)


def exit_code(e: BaseException, *, failed: int = FAILED) -> int:
    """The exit code for an error; ``failed`` is what "the operation failed" is for this command."""
    if isinstance(e, (ConfigError, ValidationError)):
        return INVALID
    if isinstance(e, JobRefusedError):
        return REFUSED
    return failed


def report(e: BaseException, *, failed: int = FAILED) -> int:
    """Print the error as one line for the person at the console; return its exit code."""
    _stderr.print(f"[bold red]错误 / error:[/] {escape(str(e))}", highlight=False)
    return exit_code(e, failed=failed)


def fail(e: BaseException, *, failed: int = FAILED) -> None:
    raise typer.Exit(report(e, failed=failed))


class CliGroup(TyperGroup):
    """The root command group: a project error or an OS error escaping any command is
    printed as one line and exits with its code (no traceback: it is not a bug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (LabwitnessError, OSError) as e:
            raise typer.Exit(report(e)) from None
