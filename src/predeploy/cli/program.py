"""The `predeploy` command: invoke's Program over predeploy's own tasks.

It runs from any folder of any repository, with no tasks.py there (the project root is
found from the working directory: see ``predeploy.config.settings.find_root``). Usage
errors (an unknown flag, a bad value, a missing argument) are exit 2 with one line;
`predeploy --list`, `predeploy TASK --help`, `--version` and shell completion
(`predeploy --print-completion-script bash`) are invoke's own.
"""

from __future__ import annotations

import re
import sys

from invoke.exceptions import Exit, ParseError, UnexpectedExit
from invoke.parser.argument import Argument
from invoke.program import Program

from predeploy import __version__
from predeploy.cli import output
from predeploy.cli.tasks import ns
from predeploy.errors import Terminated

__all__ = ["main", "program"]

USAGE_ERROR = 2


_GLOBAL_FLAGS = ("-v", "--verbose", "-q", "--quiet", "--no-color")


class PredeployProgram(Program):
    """invoke's Program with predeploy's exit-code contract for usage errors."""

    def core_args(self) -> list[Argument]:
        """invoke's own, plus -v/--verbose, -q/--quiet and --no-color."""
        return [
            *super().core_args(),
            Argument(names=("verbose", "v"), kind=bool, default=False, help="more log lines"),
            Argument(names=("quiet", "q"), kind=bool, default=False, help="only warnings, errors"),
            Argument(names=("no-color",), kind=bool, default=False, help="no colour (NO_COLOR)"),
        ]

    def parse_core(self, argv: list[str] | None) -> None:
        super().parse_core(argv)
        verbosity = 1 if self.args["verbose"].value else (-1 if self.args["quiet"].value else 0)
        output.set_current(output.Output(verbosity, bool(self.args["no-color"].value)))

    def run(self, argv: list[str] | str | None = None, exit: bool = True) -> None:
        """Parse and run; usage errors exit 2, interrupts 130 (invoke: 1 for both)."""
        output.guard_streams()  # `predeploy ... | head`: the run goes on, with its exit code
        try:
            self.create_config()
            self.parse_core(_help_first(sys.argv if argv is None else argv))  # type: ignore[arg-type]
            self.parse_collection()
            self.parse_tasks()
            self.parse_cleanup()
            self.update_config()
            self.execute()
        except ParseError as exc:
            print(f"predeploy: {_usage(str(exc))}", file=sys.stderr)
            if exit:
                sys.exit(USAGE_ERROR)
        except Exit as exc:
            if exc.message:
                print(exc.message, file=sys.stderr)
            if exit:
                sys.exit(exc.code)
        except UnexpectedExit as exc:  # no task runs shell commands; kept for completeness
            if exit:
                sys.exit(exc.result.exited)
        except Terminated as exc:
            print(f"predeploy: stopped by {exc.signal}", file=sys.stderr)
            if exit:
                sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            print("predeploy: interrupted", file=sys.stderr)
            if exit:
                sys.exit(130)


_MESSAGES = (
    (re.compile(r"No idea what '(.+)' is!"), "unknown flag or task {0}"),
    (
        re.compile(r"Flag <Argument: (\w+)[^>]*> needed value and was not given one!"),
        "--{0} needs a value",
    ),
    (re.compile(r"'(.+)' did not receive required positional arguments: '(.+)'"), "{0} needs {1}"),
)


def _usage(message: str) -> str:
    """invoke's parse error as one line, with where to look."""
    for pattern, text in _MESSAGES:
        match = pattern.search(message)
        if match:
            message = text.format(*(g.replace("_", "-") for g in match.groups()))
            break
    return f"{message} (see predeploy --list, or predeploy TASK --help)"


def _help_first(argv: list[str] | str) -> list[str] | str:
    """`predeploy TASK ... --help` as `predeploy --help TASK`, so that a task's positional
    argument never swallows --help (`predeploy new --help` is help, not a name)."""
    if isinstance(argv, str):
        return argv
    words = list(argv)
    # the global flags may come anywhere: invoke only knows them before the task
    flags = [w for w in words[1:] if w in _GLOBAL_FLAGS]
    words = [words[0], *flags, *(w for w in words[1:] if w not in _GLOBAL_FLAGS)]
    helps = [w for w in words[1:] if w in ("--help", "-h")]
    tasks = [w for w in words[1:] if not w.startswith("-")]
    if not helps or not tasks or words.index(helps[0]) < words.index(tasks[0]):
        return words
    return [words[0], *flags, "--help", tasks[0]]


program = PredeployProgram(
    namespace=ns,
    version=__version__,
    name="predeploy",
    binary="predeploy",
    binary_names=["predeploy"],
)


def main() -> None:
    """The console script's entry point."""
    program.run()
