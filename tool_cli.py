"""The exit and error convention every developer tool follows (offline_plan, policy_runner,
recommend, loadtest, e2e): exit 0 all is well, 1 a finding (a mandatory violation, no slice that
fits, a failed step), 2 bad input or a missing tool, 130 interrupted; an error is one line on
stderr. Not used by the Pulumi program or the policy pack.

Also the one definition of which stacks exist (stack_names): the tools, the tests and the
plan-drift workflow call it; the Makefile's STACKS mirrors it with the same glob.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TextIO

EXIT_OK = 0
EXIT_FINDING = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

ROOT = Path(__file__).resolve().parent


class BadInput(Exception):
    """Input the tool cannot use (a flag, a file, a config): one line, exit 2."""


class MissingTool(BadInput):
    """A program the tool runs (pulumi, kubectl, dot) is not on PATH: one line, exit 2."""


def one_line(message: object) -> str:
    """`message` as one line: a multi-line error joined with '; ' so a log keeps it whole."""
    return "; ".join(part.strip() for part in str(message).splitlines() if part.strip())


def error(message: object, *, prog: str | None = None, stream: TextIO | None = None) -> None:
    """Prints `[prog: ]message` as one line on stderr."""
    text = one_line(message)
    print(f"{prog}: {text}" if prog else text, file=stream or sys.stderr)


def fail(message: object, code: int = EXIT_BAD_INPUT, *, prog: str | None = None) -> int:
    """Prints the error line and returns `code`, for `return fail(...)` in a main."""
    error(message, prog=prog)
    return code


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a usage error as one line (`prog: error: message (see --help)`) and exit 2,
    instead of the usage dump, so the reason is what a `make` user sees. `error_prog` names the
    tool in that line when it differs from the usage's prog."""

    def __init__(self, *args: Any, error_prog: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.error_prog = error_prog

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.error_prog or self.prog}: error: {one_line(message)} (see --help)\n")


def run(main: Callable[[], int], prog: str) -> NoReturn:
    """The `__main__` of every tool: exits with main()'s code; BadInput (and MissingTool) that
    main() let through exit 2 and Ctrl-C exits 130, each with one line on stderr."""
    try:
        code = main()
    except BadInput as err:
        code = fail(f"error: {err}", prog=prog)
    except KeyboardInterrupt:
        code = fail("interrupted", EXIT_INTERRUPTED, prog=prog)
    sys.exit(code)


def stack_file(stack: str, root: Path = ROOT) -> Path:
    """Pulumi.<stack>.yaml, the stack's config file as the Pulumi CLI names it."""
    return root / f"Pulumi.{stack}.yaml"


def stack_names(root: Path = ROOT) -> list[str]:
    """The stacks of the project in `root`, sorted: one per Pulumi.<stack>.yaml (Pulumi.yaml is the
    project file, not a stack). The Makefile's STACKS uses the same glob."""
    return sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in root.glob("Pulumi.*.yaml"))


__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FINDING",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "ArgumentParser",
    "BadInput",
    "MissingTool",
    "error",
    "fail",
    "one_line",
    "run",
    "stack_file",
    "stack_names",
]
