"""The program (__main__.py, components/) and the policy pack (policies/) stand apart from the
developer tools: they import nothing from the tools' packages, and nothing outside the standard
library, themselves and what requirements.txt declares, so `pulumi up --policy-pack policies`
needs requirements.txt alone."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from collections.abc import Iterator
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROGRAM_FILES = sorted([ROOT / "__main__.py", *(ROOT / "components").rglob("*.py"), *(ROOT / "policies").rglob("*.py")])
PROGRAM_PACKAGES = {"components", "policies"}
# Distributions a declared one pins exactly and documents as part of its own API.
PART_OF = {"pydantic-core": "pydantic"}
TOOL_PACKAGES = {"offline_plan", "policy_runner", "recommend", "loadtest", "e2e", "tool_cli", "tests", "conftest"}


def _guarded(node: ast.Try) -> bool:
    """A try whose handler catches ImportError: an optional import (huggingface_hub)."""
    names = {n.id for h in node.handlers if h.type is not None for n in ast.walk(h.type) if isinstance(n, ast.Name)}
    return bool(names & {"ImportError", "ModuleNotFoundError"})


def _type_checking(node: ast.If) -> bool:
    """`if TYPE_CHECKING:`: imports for annotations only, which `pulumi up` never runs."""
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(tree: ast.AST, optional: bool = False) -> Iterator[tuple[str, int, bool]]:
    """(top-level module, line, optional) of every absolute import, including those in functions."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node) and not node.orelse:
            for child in node.body:
                yield from imports(ast.Module(body=[child], type_ignores=[]), optional=True)
        elif isinstance(node, ast.Import):
            yield from ((alias.name.split(".")[0], node.lineno, optional) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno, optional
        elif isinstance(node, ast.Try) and _guarded(node):
            for child in node.body:
                yield from imports(ast.Module(body=[child], type_ignores=[]), optional=True)
            for part in (*node.handlers, *node.orelse, *node.finalbody):
                yield from imports(part, optional)
        else:
            yield from imports(node, optional)


def program_distributions() -> set[str]:
    found: set[str] = set()
    for raw in (ROOT / "requirements.txt").read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if line and not line.startswith(("#", "-")):
            found.add(canonicalize_name(Requirement(line).name))
    return found


def test_the_program_and_the_pack_import_only_the_stdlib_themselves_and_requirements_txt() -> None:
    declared = program_distributions()
    distributions = importlib.metadata.packages_distributions()
    problems: list[str] = []
    for path in PROGRAM_FILES:
        where = path.relative_to(ROOT)
        for module, line, optional in imports(ast.parse(path.read_text(), filename=str(path))):
            if module in TOOL_PACKAGES:
                problems.append(f"{where}:{line}: imports the tool package {module}")
            elif module in PROGRAM_PACKAGES or module in sys.stdlib_module_names or module == "__future__" or optional:
                continue
            elif not {PART_OF.get(d, d) for d in (canonicalize_name(n) for n in distributions.get(module, []))} & declared:
                problems.append(f"{where}:{line}: imports {module}, which requirements.txt does not declare")
    assert not problems, "\n".join(problems)


def test_the_checker_sees_what_it_must() -> None:
    source = "import os\nfrom offline_plan import sdk\ndef f():\n    import rich\ntry:\n    import hub\nexcept ImportError:\n    pass\n"
    source += "if TYPE_CHECKING:\n    import httpx\n"
    found = list(imports(ast.parse(source)))
    assert found == [("os", 1, False), ("offline_plan", 2, False), ("rich", 4, False), ("hub", 6, True), ("httpx", 10, True)]
    assert program_distributions() >= {"pulumi", "pulumi-gcp", "pulumi-kubernetes", "pulumi-policy", "pyyaml", "pydantic"}
    assert len(PROGRAM_FILES) > 10
