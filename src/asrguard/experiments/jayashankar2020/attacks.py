"""Stage 1 of the Jayashankar et al. (2020) reproduction: the attacks, each in the attack runner's folder.

An attack folder that holds the same attack config and target choice is reused and completed
(:func:`attack_folder`), so runs can share attacks; :func:`claim_for_setup` keeps one output
folder to one setup.

Example:
    >>> chosen_attacks(["dr", "cw"], Settings())
    ('cw', 'dr')
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ...attacks.factory import make_attack
from ...attacks.runner import finished_ids, run_attack
from ...attacks.targets import TargetSampler
from ...data import read_jsonl
from ...errors import ConfigError
from ..common import write_json
from .config import NAME, SPEECH_ATTACKS, Settings


def craft_attack(name: str, recognizer, items, folder: Path, settings: Settings, progress: bool,
                 executor=None) -> dict:
    """Run (or resume) one attack with the attack runner; return ``{id: manifest row}`` and its hash.

    Example:
        >>> crafted = craft_attack("dr", recognizer, items, "runs/j/attacks", Settings())  # doctest: +SKIP
        >>> sorted(crafted)  # doctest: +SKIP
        ['config_hash', 'folder', 'rows']
    """
    overrides = {"seed": str(settings.seed), **{k: str(v) for k, v in settings.attack_overrides.get(name, {}).items()}}
    attacker = make_attack(name, recognizer, overrides)
    folder = attack_folder(Path(folder), name, attacker.config_hash, settings)
    wanted = {it.id for it in items}
    if not wanted <= finished_ids(folder):
        sampler = TargetSampler(settings.targets, seed=settings.seed, max_fill=settings.max_fill)
        meta = {"experiment": NAME, "seed": settings.seed, "model_checksum": getattr(recognizer, "checksum", None)}
        run_attack(attacker, items, folder, sampler=sampler, batch_size=settings.batch_size, progress=progress,
                   meta=meta, executor=executor)
    rows = {r["id"]: r for r in read_jsonl(folder / "manifest.jsonl", allow_partial_tail=True)
            if r.get("id") in wanted}
    return {"config_hash": attacker.config_hash, "rows": rows, "folder": folder}


def successful_examples(folder, ids=None) -> list[dict]:
    """Manifest rows of an attack folder's successful examples (each id once, manifest order),
    only those of ``ids`` when given.

    Example:
        >>> [r["id"] for r in successful_examples("runs/j/attacks/dr")][:2]  # doctest: +SKIP
        ['fsdd:3_theo_12', 'sc:go/0a2b400e_nohash_0']
    """
    rows: dict = {}
    for r in read_jsonl(Path(folder) / "manifest.jsonl", allow_partial_tail=True):
        if r.get("success") and r.get("audio") and (ids is None or r.get("id") in ids):
            rows[r["id"]] = r
    return list(rows.values())


def chosen_attacks(attacks: Sequence[str] | None, settings: Settings) -> tuple[str, ...]:
    """The attacks to run, in the paper's order; the training attack must be one of them.

    Example:
        >>> chosen_attacks(None, Settings())
        ('cw', 'dr', 'nrr', 'ia', 'us')
    """
    every = SPEECH_ATTACKS + ("us",)
    if attacks is None:
        return every
    unknown = sorted(set(attacks) - set(every))
    if unknown:
        raise ConfigError(f"unknown attack(s) {', '.join(unknown)}; choose from {', '.join(every)}")
    if settings.train_attack not in attacks:
        raise ConfigError(f"the classifiers are trained on {settings.train_attack.upper()} examples, "
                          f"so the attacks must include {settings.train_attack}")
    return tuple(a for a in every if a in attacks)


def claim_for_setup(out_dir: Path, settings: Settings) -> None:
    """Refuse an output folder made for other sources or targets: its cached features would be stale.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> claim_for_setup(folder, Settings()); claim_for_setup(folder, Settings(max_fill=0.3))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        asrguard.errors.ConfigError: ... pass another --out
    """
    defining = {"corpora": list(settings.corpora), "targets": settings.targets, "max_fill": settings.max_fill,
                "min_seconds": settings.min_seconds}
    marker = out_dir / "setup.json"
    if marker.is_file():
        made = json.loads(marker.read_text())
        if made != defining:
            raise ConfigError(f"{out_dir} holds a run with {made}, not {defining}; pass another --out")
        return
    write_json(marker, defining)


def attack_folder(root: Path, name: str, config_hash: str, settings: Settings) -> Path:
    """``root/<name>`` when it holds this very attack config and target choice (as ``asrguard attack
    --out root/<name>`` writes it), else ``root/<name>-<config hash>``, with the target kind and
    fill appended when they are not the default ones: other settings never clash with it.

    Example:
        >>> attack_folder(Path("nowhere"), "cw", "2b8e35c77f08", Settings()).name
        'cw-2b8e35c77f08'
    """
    plain = root / name
    try:
        made = json.loads((plain / "run.json").read_text())
        if (made.get("config_hash") == config_hash and made.get("targets", "mixed") == settings.targets
                and made.get("max_fill", 0.2) == settings.max_fill):
            return plain
    except (OSError, ValueError):
        pass
    default = (settings.targets, settings.max_fill) == ("mixed", 0.2)
    targets = "" if default else f"-{settings.targets}{settings.max_fill:g}"
    return root / f"{name}-{config_hash}{targets}"


def distortion(rows: Sequence[Mapping]) -> dict:
    """Mean dB_x(δ) and median SNR of manifest rows (``None`` when none has them).

    Example:
        >>> distortion([{"db_x_delta": -30.0, "snr_db": 20.0}, {"db_x_delta": -20.0, "snr_db": 10.0}])
        {'mean_db_x_delta': -25.0, 'median_snr_db': 15.0}
    """
    db = [r["db_x_delta"] for r in rows if r.get("db_x_delta") is not None]
    snr = [r["snr_db"] for r in rows if r.get("snr_db") is not None]
    return {"mean_db_x_delta": float(np.mean(db)) if db else None,
            "median_snr_db": float(np.median(snr)) if snr else None}


def attack_summary(rows: dict) -> dict:
    """Success rates, distortion and time of one attack's manifest rows.

    Example:
        >>> s = attack_summary({"a": {"success": True, "snr_db": 30.0}, "b": {"success": False}})
        >>> s["n_success"], s["success_rate"], s["median_snr_db"]
        (1, 0.5, 30.0)
    """
    done = list(rows.values())
    ok = [r for r in done if r.get("success")]
    return {
        "n_attempted": len(done), "n_success": len(ok), "n_skipped": sum(1 for r in done if r.get("skipped")),
        "success_rate": len(ok) / len(done) if done else None,
        "success_with_dropout_rate": (sum(bool(r.get("success_with_dropout")) for r in done) / len(done)
                                      if done else None),
        **distortion(ok),
        "attack_seconds": float(sum(float(r.get("wall_seconds") or 0.0) for r in done)),
    }


__all__ = ["attack_folder", "attack_summary", "distortion", "chosen_attacks", "claim_for_setup", "craft_attack",
           "successful_examples"]
