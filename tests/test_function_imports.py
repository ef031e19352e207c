"""Imports inside functions, read from the source (docs/architecture.md, "Dependency rules").

In the library an import belongs at the top of its module. One inside a function needs a reason
(a heavy or optional dependency, an import cycle, keeping ``asrguard --help`` fast), written as
a comment on its line or on the line above it (one comment above a group of consecutive imports
covers the group). The CLI (``cli/``) and ``service/server.py`` import lazily by design and state
their reason once at the top of the module instead.
"""

import ast
import io
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "asrguard"


def is_shell(path: Path) -> bool:
    """The CLI and the server: lazy imports keep startup fast there, stated once per module."""
    relative = path.relative_to(PACKAGE).as_posix()
    return relative.startswith("cli/") or relative == "service/server.py"


def function_level_imports(tree: ast.AST) -> set[ast.stmt]:
    found = set()
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.update(n for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return found


def comment_lines(source: str) -> tuple[set[int], set[int]]:
    """Lines holding a comment, and lines holding only a comment."""
    anywhere, code_lines = set(), set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            anywhere.add(token.start[0])
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                                tokenize.ENDMARKER):
            code_lines.update(range(token.start[0], token.end[0] + 1))
    return anywhere, anywhere - code_lines


def unexplained(source: str) -> list[tuple[int, str]]:
    """``(line, statement)`` of each function-level import with no comment on its line or above it."""
    tree = ast.parse(source)
    local = function_level_imports(tree)
    anywhere, alone = comment_lines(source)
    missing = []
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            if not isinstance(statements, list):
                continue
            group_start = None  # first line of the run of consecutive imports a statement belongs to
            for statement in statements:
                if statement not in local:
                    group_start = None
                    continue
                if group_start is None:
                    group_start = statement.lineno
                own_line = any(line in anywhere for line in range(statement.lineno, statement.end_lineno + 1))
                if not (own_line or statement.lineno - 1 in alone or group_start - 1 in alone):
                    missing.append((statement.lineno, ast.unparse(statement)))
    return sorted(missing)


def library_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if not is_shell(p)]


def test_every_function_level_import_in_the_library_says_why():
    offenders = [f"{path.relative_to(PACKAGE.parents[1]).as_posix()}:{line}: {statement}"
                 for path in library_modules()
                 for line, statement in unexplained(path.read_text(encoding="utf-8"))]
    assert offenders == [], (
        "function-level imports without a reason; move each to the top of its module, or keep it local with a "
        "one-line comment on it or above it (heavy/optional dependency, a cycle, `asrguard --help` speed):\n  "
        + "\n  ".join(offenders))


def test_the_cli_and_the_server_state_their_reason_once_at_the_top():
    shells = [p for p in sorted(PACKAGE.rglob("*.py")) if is_shell(p)]
    assert any(p.name == "server.py" for p in shells) and any(p.name == "attack.py" for p in shells)
    silent = []
    for path in shells:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        if not function_level_imports(tree):
            continue
        first_function = min((n.lineno for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))),
                             default=len(source.splitlines()) + 1)
        _, alone = comment_lines(source)
        if not any(line < first_function for line in alone):
            silent.append(path.relative_to(PACKAGE.parents[1]).as_posix())
    assert silent == [], f"modules importing inside functions with no comment before their first definition: {silent}"


def test_the_checker_flags_a_bare_import_and_accepts_reasons():
    source = (
        "import os\n"
        "\n"
        "def bare():\n"
        "    import json\n"
        "    return json\n"
        "\n"
        "def same_line():\n"
        "    import ray  # optional extra\n"
        "\n"
        "def above_group():\n"
        "    # heavy: transformers\n"
        "    from transformers import A\n"
        "    from transformers import B\n"
        "    x = 1\n"
        "    from tokenizers import C\n"
        "    return A, B, C, x\n"
    )
    assert unexplained(source) == [(4, "import json"), (15, "from tokenizers import C")]


def test_the_checker_sees_the_library_s_kept_imports():
    # guard against a checker that silently finds nothing: ART stays local (an optional extra)
    art = PACKAGE / "asr" / "art.py"
    tree = ast.parse(art.read_text(encoding="utf-8"))
    names = {alias.name for node in function_level_imports(tree) for alias in node.names}
    assert "PyTorchEstimator" in names
    assert not is_shell(art) and is_shell(PACKAGE / "cli" / "attack.py") and is_shell(PACKAGE / "service" / "server.py")
