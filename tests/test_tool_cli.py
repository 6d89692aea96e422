"""One exit and error convention for every developer tool (tool_cli.py): 0 all is well, 1 a
finding, 2 bad input or a missing tool, 130 interrupted; an error is one line on stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tool_cli

ROOT = Path(__file__).resolve().parent.parent
# Every `python -m` entry point of the tools, and the name its usage errors carry.
ENTRY_POINTS = {
    "offline_plan": "python -m offline_plan",
    "offline_plan.bench": "python -m offline_plan.bench",
    "policy_runner": "python -m policy_runner",
    "recommend": "recommend",
    "loadtest": "loadtest",
    "e2e": "e2e",
    "e2e.compare_preview": "compare_preview",
}


def test_the_codes() -> None:
    assert (tool_cli.EXIT_OK, tool_cli.EXIT_FINDING, tool_cli.EXIT_BAD_INPUT, tool_cli.EXIT_INTERRUPTED) == (0, 1, 2, 130)
    assert issubclass(tool_cli.MissingTool, tool_cli.BadInput)


@pytest.mark.parametrize(
    ("body", "code", "stderr"),
    [
        (lambda: 0, 0, ""),
        (lambda: 1, 1, ""),
        (lambda: (_ for _ in ()).throw(tool_cli.BadInput("--x = 'y':\nnot a number")), 2, "tool: error: --x = 'y':; not a number\n"),
        (lambda: (_ for _ in ()).throw(tool_cli.MissingTool("pulumi is not on PATH")), 2, "tool: error: pulumi is not on PATH\n"),
        (lambda: (_ for _ in ()).throw(KeyboardInterrupt()), 130, "tool: interrupted\n"),
    ],
)
def test_run_maps_outcomes_to_codes_and_one_line(body: object, code: int, stderr: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        tool_cli.run(body, "tool")  # type: ignore[arg-type]
    assert exited.value.code == code
    assert capsys.readouterr().err == stderr


def test_usage_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    parser = tool_cli.ArgumentParser(prog="python -m x", error_prog="x")
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--n", "many"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == "x: error: argument --n: invalid int value: 'many' (see --help)\n"


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_every_tool_refuses_an_unknown_flag_with_one_line_and_2(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--no-such-flag"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"{ENTRY_POINTS[module]}: "), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("package", ["offline_plan", "policy_runner", "recommend", "loadtest", "e2e"])
def test_every_tool_main_goes_through_tool_cli(package: str) -> None:
    main = (ROOT / package / "__main__.py").read_text()
    assert "tool_cli.run(main" in main and "sys.exit(" not in main and "SystemExit" not in main


def test_stack_names_lists_one_stack_per_stack_file(tmp_path: Path) -> None:
    """The one definition of the stack list (the tools, the tests and plan-drift.yml use it)."""
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml", "Pulumi.dev.yaml", "Pulumi.dev.yaml.bak", "other.yaml"):
        (tmp_path / name).write_text("")
    assert tool_cli.stack_names(tmp_path) == ["dev", "prod"]
    assert tool_cli.stack_file("dev", tmp_path) == tmp_path / "Pulumi.dev.yaml"
    assert {"dev", "staging", "prod"} <= set(tool_cli.stack_names())
