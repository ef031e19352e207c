"""Attacks by name, with their settings overridden from strings (as the CLI and experiments give them).

Example:
    >>> from asrguard.attacks.factory import ATTACKS
    >>> "known-mask" in ATTACKS
    True
"""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError

ATTACKS = ("cw", "dr", "nrr", "ia", "us", "universal", "known-mask", "pgd", "eot-dropout", "bpda-transform",
           "stats-penalty", "combined-evasion", "eot-noise", "prefix-consistent", "dropout-evasion")


def _setting_type(field: dataclasses.Field) -> type | None:
    """What a setting's string is read as: its default's type, or its annotation's when it has no default."""
    if field.default is not dataclasses.MISSING:
        return type(field.default)
    return {"bool": bool, "int": int, "float": float}.get(str(field.type))


def make_attack(name: str, recognizer, overrides: dict | None = None):
    """An attack by CLI name with config fields overridden from ``overrides``.

    Settings without a default (PGD's ``eps``, ``step_size``, ``iterations``) must be overridden.
    """
    # keeps asrguard --help fast: the attacks import torch, and cli/attack.py imports this module at startup
    from .adaptive import KnownMaskAttack
    from .combined_evasion import CombinedEvasionAttack
    from .cw import CWAttack, DRAttack, NRRAttack, USAttack
    from .dropout_evasion import DropoutEvasionAttack
    from .evasion import BPDATransformAttack, EOTDropoutAttack
    from .imperceptible import ImperceptibleAttack
    from .pgd import PGDAttack
    from .rival_evasion import FloodEvasionAttack, PrefixEvasionAttack
    from .stats_penalty import StatsPenaltyAttack
    from .universal import UniversalAttack

    classes = {"cw": CWAttack, "dr": DRAttack, "nrr": NRRAttack, "ia": ImperceptibleAttack, "us": USAttack,
               "universal": UniversalAttack, "known-mask": KnownMaskAttack, "pgd": PGDAttack,
               "eot-dropout": EOTDropoutAttack, "bpda-transform": BPDATransformAttack,
               "stats-penalty": StatsPenaltyAttack, "combined-evasion": CombinedEvasionAttack,
               "eot-noise": FloodEvasionAttack, "prefix-consistent": PrefixEvasionAttack,
               "dropout-evasion": DropoutEvasionAttack}
    if name not in classes:
        raise ConfigError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}")
    cls = classes[name]
    fields = {f.name: f for f in dataclasses.fields(cls.config_class)}
    values = {}
    for key, raw in (overrides or {}).items():
        if key not in fields:
            raise ConfigError(f"{name} has no setting {key!r}; settings: {', '.join(sorted(fields))}")
        kind = _setting_type(fields[key])
        try:
            if kind is bool:
                values[key] = str(raw).lower() in ("1", "true", "yes", "on")
            elif kind in (int, float):
                values[key] = kind(raw)
            else:
                values[key] = raw
        except ValueError:
            raise ConfigError(f"{name}: cannot read {key}={raw!r} as {kind.__name__}") from None
    missing = [f.name for f in fields.values() if f.init and f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{name} needs the setting(s) {', '.join(missing)} (e.g. --set {missing[0]}=...)")
    return cls(recognizer, cls.config_class(**values))


__all__ = ["ATTACKS", "make_attack"]
