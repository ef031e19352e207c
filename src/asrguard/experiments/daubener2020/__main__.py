"""``python -m asrguard.experiments.daubener2020 OUT_DIR [--quick] [--data-root DIR] [--seed N]``.

Runs (or resumes) the reproduction, prints ``tables.md`` and exits 1 when a bar fails.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

import asrguard.experiments.daubener2020 as reproduction


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the reproduction, print its tables; 0 when every bar passes (or is only reported).

    Example:
        >>> main(["runs/daubener2020-quick", "--quick"])  # doctest: +SKIP
        0
    """
    parser = argparse.ArgumentParser(prog="python -m asrguard.experiments.daubener2020",
                                     description=reproduction.__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-root", default=str(reproduction.DEFAULT_DATA_ROOT))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results = reproduction.run(args.out_dir, quick=args.quick, data_root=args.data_root, seed=args.seed)
    print((Path(args.out_dir) / "tables.md").read_text(encoding="utf-8"))
    return 0 if all(b["pass"] is not False for b in results["bars"]) else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
