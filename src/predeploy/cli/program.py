"""The `predeploy` command: invoke's Program over predeploy's own tasks.

It runs from any folder of any repository, with no tasks.py there (the project root is
found from the working directory: see ``predeploy.config.project.find_root``). Usage
errors (an unknown flag, a bad value, a missing argument, two tasks in one call) are exit
2 with one line. The global flags are predeploy's own: -v, -q, --no-color, and from
invoke `--help`, `--list`, `--version` and shell completion (`predeploy
--print-completion-script bash`); invoke's others (--dry, --echo, --pty, --config, ...)
are about shell commands no task runs, so they are refused rather than ignored.
"""

from __future__ import annotations

import inspect
import re
import sys
import textwrap

from invoke.exceptions import Exit, ParseError, UnexpectedExit
from invoke.parser.argument import Argument
from invoke.program import Program

from predeploy import __version__
from predeploy.cli import boundary, fleet_flags, output
from predeploy.cli.tasks import ns
from predeploy.errors import EXIT_CODES, ConfigError, PredeployError

__all__ = ["EXIT_CODES", "main", "program"]


_GLOBAL_FLAGS = ("-v", "--verbose", "-q", "--quiet", "--no-color")


_INVOKE_KEPT = ("help", "version", "list", "complete", "print-completion-script")


class PredeployProgram(Program):
    """invoke's Program with predeploy's global flags and its exit-code contract."""

    def core_args(self) -> list[Argument]:
        """invoke's --help, --list, --version and completion, plus -v, -q and --no-color."""
        return [
            *(arg for arg in super().core_args() if arg.name in _INVOKE_KEPT),
            Argument(names=("verbose", "v"), kind=bool, default=False, help="more log lines"),
            Argument(names=("quiet", "q"), kind=bool, default=False, help="errors only"),
            Argument(names=("no-color",), kind=bool, default=False, help="no colour (NO_COLOR)"),
        ]

    def parse_core_args(self) -> None:
        """Parse our flags; invoke's others stay at their defaults for invoke's own code,
        which reads them (``--dry`` on the command line is an unknown flag)."""
        super().parse_core_args()
        parsed = self.core[0].args
        for arg in super().core_args():
            if arg.name not in parsed:
                parsed[arg.name] = arg

    def parse_core(self, argv: list[str] | None) -> None:
        super().parse_core(argv)
        verbosity = 1 if self.args["verbose"].value else (-1 if self.args["quiet"].value else 0)
        output.set_current(output.Output(verbosity, bool(self.args["no-color"].value)))

    def parse_tasks(self) -> None:
        """One task per call: `predeploy check status` ran check, on dev, then status."""
        super().parse_tasks()
        if len(self.tasks) > 1:
            names = ", ".join(str(t.name) for t in self.tasks)
            raise ConfigError(f"one task at a time ({names} given): run each in its own call")

    def parse_cleanup(self) -> None:
        """invoke's --help/--list handling; `--list NAME` of no such group is a usage error."""
        root = self.args.list.value
        if isinstance(root, str) and root not in self.collection.collections:
            raise ConfigError(f"--list {root}: no such group of tasks")
        super().parse_cleanup()

    def print_help(self) -> None:
        """The global flags (not --complete, the completion script's plumbing), the tasks
        and the exit codes."""
        print(f"Usage: {self.binary} [--global-opts] <task> [--task-opts]\n")
        print("Global options:\n")
        flags = self.initial_context.help_tuples()
        self.print_columns([(names, text) for names, text in flags if names != "--complete"])
        self.list_tasks()
        print("Exit codes:\n")
        self.print_columns(EXIT_CODES)

    def print_task_help(self, name: str) -> None:
        """A task's usage (one task per call), its docstring and its options."""
        flags = self.parser.contexts[name].help_tuples() + fleet_flags.help_lines(name)
        print(f"Usage: {self.binary} {name}{' [--options]' if flags else ''}\n")
        print("Docstring:")
        doc = inspect.getdoc(self.collection[name]) or "none"
        print(textwrap.indent(doc, self.leading_indent, lambda line: bool(line.strip())) + "\n")
        print("Options:")
        if flags:
            self.print_columns(flags)
        else:
            print(f"{self.leading_indent}none\n")
        print(f"Exit codes: see {self.binary} --help")

    def run(self, argv: list[str] | str | None = None, exit: bool = True) -> None:
        """Parse and run; every ending is boundary.exit_for's line and code (invoke's own
        would exit 1 for a usage error or an interrupt)."""
        output.guard_streams()  # `predeploy ... | head`: the run goes on, with its exit code
        try:
            self.create_config()
            argv = sys.argv if argv is None else argv
            words = (
                fleet_flags.extract(list(argv), _GLOBAL_FLAGS) if isinstance(argv, list) else argv
            )
            self.parse_core(_help_first(words))  # type: ignore[arg-type]
            self.parse_collection()
            self.parse_tasks()
            self.parse_cleanup()
            self.update_config()
            self.execute()
        except UnexpectedExit as exc:  # no task runs shell commands; kept for completeness
            if exit:
                sys.exit(exc.result.exited)
        except ParseError as exc:
            self._end(ConfigError(_usage(str(exc))), exit=exit)
        except (Exit, PredeployError, KeyboardInterrupt) as exc:  # Terminated: a KeyboardInterrupt
            self._end(exc, exit=exit)

    @staticmethod
    def _end(exc: BaseException, *, exit: bool) -> None:
        line, code = boundary.exit_for(exc)
        if line:  # the final error line: masked here, whoever raised it
            print(output.mask(line), file=sys.stderr)
        if exit:
            sys.exit(code)


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
