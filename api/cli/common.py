"""What every ``labwitness`` command shares: the exit-code rule, settings, who acts, output.

The exit-code rule, one for every command:

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
escape, so no command maps errors by hand.  Errors are one line on stderr,
never a traceback.

Every command builds :class:`~api.settings.Settings` once (:func:`settings`:
environment, config file, flags) and passes it in.
"""

from __future__ import annotations

import getpass
import json
import logging
import sys
from contextlib import contextmanager
from typing import Any, Iterator, NoReturn

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from api.settings import Settings, load_settings
from labwitness.errors import ConfigError, JobRefusedError, LabwitnessError, ValidationError

OK, FAILED, INVALID, REFUSED = 0, 1, 2, 3
COULD_NOT_RUN = 4  # check commands only

HELP = ("退出码 / exit codes: 0 完成 / done · 1 操作失败 / the operation failed · "
        "2 参数或配置无效 / invalid arguments or configuration · 3 被拒绝执行 / refused. "
        "检查类命令 / check commands (health, retention, report --check): "
        "0 ok · 1 warning · 2 critical · 3 refused · 4 could not run.")

#: messages for the person at the console; stdout carries only what a script reads (JSON, a token, a PEM)
console = Console(stderr=True)


def exit_code(e: BaseException, *, failed: int = FAILED) -> int:
    """The exit code for an error; ``failed`` is what "the operation failed" is for this command."""
    if isinstance(e, (ConfigError, ValidationError)):
        return INVALID
    if isinstance(e, JobRefusedError):
        return REFUSED
    return failed


def report(e: BaseException, *, failed: int = FAILED) -> int:
    """Print the error as one line for the person at the console; return its exit code."""
    console.print(f"[bold red]错误 / error:[/] {escape(str(e))}", highlight=False)
    return exit_code(e, failed=failed)


def fail(e: BaseException, *, failed: int = FAILED) -> NoReturn:
    raise typer.Exit(report(e, failed=failed))


class CliGroup(TyperGroup):
    """The root command group: a project error or an OS error escaping any command is
    printed as one line and exits with its code (no traceback: it is not a bug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (LabwitnessError, OSError) as e:
            raise typer.Exit(report(e)) from None


def settings_or_exit(**overrides) -> Settings:
    """The settings of this run; a bad one exits 2 with its one-line reason."""
    try:
        return load_settings(**overrides)
    except LabwitnessError as e:
        fail(e)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("apscheduler", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def actor() -> str:
    """Who acts, for revisions and the audit log: the operating-system user."""
    return f"cli:{getpass.getuser()}"


@contextmanager
def index_only(settings: Settings) -> Iterator[Any]:
    """The index stores without storage or recorders (:func:`api.runtime.index_only`)."""
    from api.runtime import index_only as open_index  # heavy: the runtime pulls in the recorder (av); keeps --help fast

    with open_index(settings) as ix:
        yield ix


@contextmanager
def runtime(settings: Settings, **kw) -> Iterator[Any]:
    """Storage, index and (unless ``recording=False``) recorders (:class:`api.runtime.Runtime`)."""
    from api.runtime import Runtime  # heavy: the runtime pulls in the recorder (av); keeps --help fast

    with Runtime(settings, **kw) as rt:
        yield rt


def print_json(data) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def table(title: str, columns: list[str], rows: list[list]) -> None:
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    Console().print(t)
