"""The dependency rules of docs/architecture.md, read from the source's imports (no import is executed)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "asrguard"
CONCRETE_RECOGNISERS = ("asrguard.asr.ctc", "asrguard.asr.hybrid", "asrguard.asr.whisper", "asrguard.asr.huggingface",
                        "asrguard.asr.art", "asrguard.asr.registry", "asrguard.defaults")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, at any depth (function-level imports too)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            found.add(stem)
            found.update(f"{stem}.{alias.name}" for alias in node.names)
    return found


def modules():
    return [(module_name(p), imported_modules(p)) for p in sorted(PACKAGE.rglob("*.py"))]


def offenders(inside, forbidden):
    return sorted(f"{name} imports {imp}" for name, imports in modules() if inside(name)
                  for imp in imports if any(imp == f or imp.startswith(f + ".") for f in forbidden))


def test_the_library_never_imports_the_cli_or_typer():
    assert offenders(lambda name: not name.startswith("asrguard.cli"), ("asrguard.cli", "typer")) == []


def test_attacks_uncertainty_and_detect_see_only_the_recogniser_interface():
    stages = ("asrguard.attacks", "asrguard.uncertainty", "asrguard.detect")
    assert offenders(lambda name: name.startswith(stages), CONCRETE_RECOGNISERS) == []


def test_recognisers_never_import_attacks():
    assert offenders(lambda name: name.startswith("asrguard.asr"), ("asrguard.attacks",)) == []


def test_the_checker_sees_relative_imports():
    # guard against a checker that silently finds nothing
    cli_imports = dict(modules())["asrguard.cli.attack"]
    assert "asrguard.attacks.factory" in cli_imports and "typer" in cli_imports
