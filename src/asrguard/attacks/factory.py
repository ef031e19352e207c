"""Attacks by name, with their settings overridden from strings (as the CLI and experiments give them).

Example:
    >>> from asrguard.attacks.factory import ATTACKS
    >>> "known-mask" in ATTACKS
    True
"""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError

ATTACKS = ("cw", "dr", "nrr", "ia", "us", "universal", "known-mask")


def make_attack(name: str, recognizer, overrides: dict | None = None):
    """An attack by CLI name with config fields overridden from ``overrides``."""
    from .adaptive import KnownMaskAttack
    from .cw import CWAttack, DRAttack, NRRAttack, USAttack
    from .imperceptible import ImperceptibleAttack
    from .universal import UniversalAttack

    classes = {"cw": CWAttack, "dr": DRAttack, "nrr": NRRAttack, "ia": ImperceptibleAttack, "us": USAttack,
               "universal": UniversalAttack, "known-mask": KnownMaskAttack}
    if name not in classes:
        raise ConfigError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}")
    cls = classes[name]
    fields = {f.name: f for f in dataclasses.fields(cls.config_class)}
    values = {}
    for key, raw in (overrides or {}).items():
        if key not in fields:
            raise ConfigError(f"{name} has no setting {key!r}; settings: {', '.join(sorted(fields))}")
        default = fields[key].default
        try:
            if isinstance(default, bool):
                values[key] = str(raw).lower() in ("1", "true", "yes", "on")
            elif isinstance(default, int):
                values[key] = int(raw)
            elif isinstance(default, float):
                values[key] = float(raw)
            else:
                values[key] = raw
        except ValueError:
            raise ConfigError(f"{name}: cannot read {key}={raw!r} as {type(default).__name__}") from None
    return cls(recognizer, cls.config_class(**values))


__all__ = ["ATTACKS", "make_attack"]
