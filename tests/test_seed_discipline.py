"""Seed discipline (docs/architecture.md, Conventions): seeds come from ``rng.derive``; no global RNG.

Every module under ``src/asrguard`` is parsed with :mod:`ast`, so docstrings (doctest examples)
and comments are never taken for code. Three rules:

* no seed arithmetic (``seed * 10 + 1``, ``manual_seed(seed + k)``) except the frozen legacy
  sites in :data:`asrguard.rng.FROZEN_SEED_ARITHMETIC`, each of which still exists exactly once;
* no global RNG: numpy's module-level draws or unseeded generators, the ``random`` module, torch
  draws without ``generator=``, or seeding torch's global RNG, except the few :data:`ALLOWED`;
* every ``stochastic()`` takes ``seed`` as a required keyword.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import asrguard
from asrguard.errors import ConfigError
from asrguard.rng import FROZEN_SEED_ARITHMETIC, require_seed

SRC = Path(asrguard.__file__).resolve().parent
MODULES = sorted(SRC.rglob("*.py"))

SEED_NAME = re.compile(r"(?:^|_)seed$", re.IGNORECASE)  # seed, c.seed, mask_seed; not n_seeds
#: calls whose first argument is a seed (``torch.Generator().manual_seed(x)``, ``default_rng(x)``, ...)
SEED_CALLS = {"manual_seed", "default_rng", "SeedSequence", "PCG64", "RandomState", "derive", "generator"}
#: numpy.random names that make a seeded generator (allowed when given a seed)
NUMPY_SEEDED = {"default_rng", "Generator", "SeedSequence", "BitGenerator", "PCG64", "PCG64DXSM", "Philox",
                "SFC64", "MT19937", "RandomState"}
TORCH_DRAWS = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "bernoulli",
               "multinomial", "normal", "poisson"}
TENSOR_DRAWS = {"uniform_", "normal_", "bernoulli_", "random_", "exponential_", "geometric_", "cauchy_",
                "log_normal_"}
TORCH_SEEDING = {"torch.manual_seed", "torch.seed", "torch.random.manual_seed", "torch.random.seed",
                 "torch.cuda.manual_seed", "torch.cuda.manual_seed_all"}

_TRAIN_CTC = "CTC training: train() seeds torch's global RNG every epoch; the shipped model was trained on these draws"
#: (module, enclosing function, call) -> why the global RNG is unavoidable there. Nothing else may use it.
ALLOWED = {
    ("asr/train.py", "train", "torch.manual_seed"): "training seeds the global RNG (weight init, per-epoch draws)",
    ("asr/train.py", "SpecAugment.__call__", "torch.randint"): _TRAIN_CTC,
    ("asr/train.py", "SpecAugment.__call__", "torch.rand"): _TRAIN_CTC,
    ("asr/ctc/masks.py", "training_dropout", "torch.randint"): _TRAIN_CTC,
    ("asr/hybrid/train.py", "train_recognizer", "torch.manual_seed"): "hybrid training: weight init only",
    ("asr/hybrid/acoustic.py", "BayesLinear.__init__", ".uniform_"):
        "BNN weight init, as nn.Linear's: seeded by training's torch.manual_seed, replaced on load",
    ("asr/hybrid/acoustic.py", "MatrixGaussianLinear.__init__", ".uniform_"):
        "BNN weight init, as nn.Linear's: seeded by training's torch.manual_seed, replaced on load",
}


def _dotted(node: ast.AST) -> str | None:
    """``np.random.rand`` for the call target ``np.random.rand``; None for anything but names and attributes."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _is_seed_name(node: ast.AST) -> bool:
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    return bool(name and SEED_NAME.search(name))


def _leaves(node: ast.AST):
    if isinstance(node, ast.BinOp):
        yield from _leaves(node.left)
        yield from _leaves(node.right)
    else:
        yield node


class _Scan(ast.NodeVisitor):
    def __init__(self, source: str, rel: str):
        self.source, self.rel = source, rel
        self.scope: list[str] = []
        self.arithmetic: list[tuple[int, str]] = []  # (line, expression)
        self.global_rng: list[tuple[int, str, str]] = []  # (line, function, call)
        self.stochastic: list[tuple[int, bool]] = []  # (line, seed is a required keyword)
        self.random_aliases: set[str] = set()
        self._seen: set[int] = set()
        self.visit(ast.parse(source, filename=rel))

    # -- scopes, for the allowlist and the messages
    def _scoped(self, node):
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = _scoped

    def visit_FunctionDef(self, node):
        if node.name == "stochastic":
            kw = dict(zip((a.arg for a in node.args.kwonlyargs), node.args.kw_defaults))
            self.stochastic.append((node.lineno, "seed" in kw and kw["seed"] is None))
        self._scoped(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    # -- seed arithmetic
    def _arithmetic(self, node: ast.AST) -> None:
        if id(node) not in self._seen:
            self._seen.update(id(n) for n in ast.walk(node))
            text = " ".join(ast.get_source_segment(self.source, node).split())
            self.arithmetic.append((node.lineno, text))

    def visit_BinOp(self, node):
        if any(_is_seed_name(leaf) for leaf in _leaves(node)):
            self._arithmetic(node)  # the outermost expression: its inner BinOps are marked seen
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        if _is_seed_name(node.target):
            self._arithmetic(node)
        self.generic_visit(node)

    # -- imports of the stdlib random module / numpy.random names
    def visit_Import(self, node):
        for alias in node.names:
            if alias.name == "random":
                self.random_aliases.add(alias.asname or "random")
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        for alias in node.names:
            if node.module == "random" and alias.name not in ("Random", "SystemRandom"):
                self._global(node, f"from random import {alias.name}")
            if node.module == "numpy.random" and alias.name not in NUMPY_SEEDED:
                self._global(node, f"from numpy.random import {alias.name}")
            if node.module == "numpy" and alias.name == "random":
                self._global(node, "from numpy import random")
        self.generic_visit(node)

    # -- calls
    def _global(self, node: ast.AST, call: str) -> None:
        self.global_rng.append((node.lineno, ".".join(self.scope) or "<module>", call))

    def visit_Call(self, node):
        name = _dotted(node.func) or ""
        last = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        keywords = {k.arg for k in node.keywords}
        # a seed computed by arithmetic where it is passed: seed=10_000 + epoch, manual_seed(seed * 7 + 1)
        passed = [k.value for k in node.keywords if k.arg and SEED_NAME.search(k.arg)]
        if last in SEED_CALLS and node.args:
            passed.append(node.args[0])
        for value in passed:
            while isinstance(value, ast.Call) and _dotted(value.func) == "int" and value.args:
                value = value.args[0]
            if isinstance(value, ast.BinOp):
                self._arithmetic(value)
        # global RNGs
        head, _, attr = name.rpartition(".")
        unseeded = not node.args and not node.keywords or (
            node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value is None)
        if head in ("np.random", "numpy.random") and (attr not in NUMPY_SEEDED or (
                attr in ("default_rng", "RandomState") and unseeded)):
            self._global(node, name + ("()" if attr in NUMPY_SEEDED else ""))
        if head in self.random_aliases and attr not in ("Random", "SystemRandom") or (
                head in self.random_aliases and attr == "Random" and unseeded):
            self._global(node, name)
        if head == "torch" and attr in TORCH_DRAWS and "generator" not in keywords:
            self._global(node, name)
        if name in TORCH_SEEDING:
            self._global(node, name)
        if isinstance(node.func, ast.Attribute) and last in TENSOR_DRAWS and "generator" not in keywords:
            self._global(node, "." + last)
        self.generic_visit(node)


SCANS = {rel: _Scan(path.read_text(encoding="utf-8"), rel)
         for rel, path in ((path.relative_to(SRC).as_posix(), path) for path in MODULES)}


def test_the_scan_sees_the_package():
    assert len(SCANS) > 50 and "rng.py" in SCANS and "attacks/cw.py" in SCANS


def test_no_seed_arithmetic_outside_the_frozen_list():
    frozen = {(module, expression) for module, expression, _ in FROZEN_SEED_ARITHMETIC}
    new = [f"src/asrguard/{rel}:{line}: {text}" for rel, scan in SCANS.items()
           for line, text in scan.arithmetic if (rel, text) not in frozen]
    assert not new, ("seeds derived by arithmetic; use asrguard.rng.derive(seed, *keys) (or rng.generator) "
                     "instead:\n  " + "\n  ".join(new))


def test_every_frozen_site_is_still_there_exactly_once():
    """A frozen expression that changed or moved is an output change: update the list on purpose."""
    assert len({(m, e) for m, e, _ in FROZEN_SEED_ARITHMETIC}) == len(FROZEN_SEED_ARITHMETIC)
    found = Counter((rel, text) for rel, scan in SCANS.items() for _, text in scan.arithmetic)
    wrong = [f"src/asrguard/{m}: {e!r} found {found[(m, e)]} times" for m, e, _ in FROZEN_SEED_ARITHMETIC
             if found[(m, e)] != 1]
    assert not wrong, "frozen seed arithmetic (asrguard.rng.FROZEN_SEED_ARITHMETIC) out of date:\n  " + \
        "\n  ".join(wrong)
    assert all(reason for _, _, reason in FROZEN_SEED_ARITHMETIC)


def test_no_global_rng():
    hits = [(rel, line, scope, call) for rel, scan in SCANS.items() for line, scope, call in scan.global_rng]
    bad = [f"src/asrguard/{rel}:{line} ({scope}): {call}" for rel, line, scope, call in hits
           if (rel, scope, call) not in ALLOWED]
    assert not bad, ("global RNG used; draw from a generator seeded by asrguard.rng.derive / rng.generator "
                     "(torch: generator=torch.Generator().manual_seed(...)):\n  " + "\n  ".join(bad))
    used = {(rel, scope, call) for rel, _, scope, call in hits}
    assert not set(ALLOWED) - used, f"allowlist entries that match nothing: {sorted(set(ALLOWED) - used)}"


def test_every_stochastic_requires_a_seed_keyword():
    found = [(rel, line, ok) for rel, scan in SCANS.items() for line, ok in scan.stochastic]
    assert len(found) >= 5  # the CTC, hybrid, Whisper and HF recognisers, the protocol, the LM wrapper
    bad = [f"src/asrguard/{rel}:{line}" for rel, line, ok in found if not ok]
    assert not bad, "stochastic() must take `*, seed: int` with no default:\n  " + "\n  ".join(bad)


def test_the_rules_catch_what_they_should_and_nothing_else():
    bad = _Scan("\n".join([
        "import random, numpy as np, torch",
        "a = np.random.default_rng()",
        "b = np.random.rand(3)",
        "np.random.seed(0)",
        "c = random.random()",
        "d = torch.rand(3)",
        "torch.manual_seed(1)",
        "e = torch.empty(3).normal_()",
        "f = np.random.default_rng(None)",
    ]), "probe.py")
    assert [call for _, _, call in bad.global_rng] == ["np.random.default_rng()", "np.random.rand",
                                                       "np.random.seed", "random.random", "torch.rand",
                                                       "torch.manual_seed", ".normal_", "np.random.default_rng()"]
    ok = _Scan("\n".join([
        "import numpy as np, torch",
        "a = np.random.default_rng(seed)",
        "b = np.random.default_rng([seed, i, 7])",
        "g = torch.Generator().manual_seed(derive(seed, 'x'))",
        "d = torch.rand(3, generator=g)",
        "e = np.random.PCG64([seed, stream])",
        "n = len(seeds) + 1",
    ]), "probe.py")
    assert ok.global_rng == [] and ok.arithmetic == []
    sums = _Scan("x = f(seed=10_000 + epoch)\ny = c.seed * 3 + 1\ng.manual_seed(int(k + 1))\nseed += 1\n",
                 "probe.py")
    assert [text for _, text in sums.arithmetic] == ["10_000 + epoch", "c.seed * 3 + 1", "k + 1", "seed += 1"]


@pytest.mark.parametrize("value", [None, True, 1.5, "3"])
def test_require_seed_refuses_anything_but_an_integer(value):
    with pytest.raises(ConfigError, match="integer seed"):
        require_seed(value)


def test_require_seed_takes_numpy_integers():
    assert require_seed(np.int64(7)) == 7 and type(require_seed(np.int64(7))) is int
