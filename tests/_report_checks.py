"""The check every reproduction table goes through: each AUROC shows n and an interval.

Used by ``tests/test_evaluate_tables.py`` (tables rendered from results dicts shaped like real
runs) and ``tests/test_detect_experiment.py`` (the tables of a tiny finished run).
"""

from __future__ import annotations

import re

from asrguard.evaluate.tables import SMOKE_MARK, SMOKE_TEST_BELOW

#: An AUROC cell: value (bold in the Jayashankar tables), the smoke-test mark when small, then
#: ``(low–high, n=adversarial/benign)``; a paper figure or an accuracy may follow.
AUROC_CELL = re.compile(r"^(\*\*)?(?P<value>\d\.\d{3})(\*\*)?(?P<mark>†?) "
                        r"\((?P<low>\d\.\d{2})–(?P<high>\d\.\d{2}), n=(?P<adv>\d+)/(?P<ben>\d+)\)")
#: Columns of AUROC tables that label a row or hold something else than an AUROC.
NOT_AUROC_COLUMNS = {"", "detector", "features", "classifier", "corpus", "targets", "model", "ε", "iterations", "step", "n adv",
                     "mean max-entropy benign / adversarial", "level", "median peak", "target exact", "SNR (dB)",
                     "ensemble attack"}


def auroc_cells(markdown: str) -> list[str]:
    """Every AUROC a report shows: the value columns of tables under a heading that names
    AUROC, columns whose header names AUROC, and bullet lines that name an AUROC."""
    found, heading, header = [], "", None
    for line in markdown.splitlines():
        if line.startswith("#"):
            heading, header = line, None
        elif line.startswith("|"):
            row = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = row
            elif not set(line.replace("|", "").strip()) <= set("-: "):
                for name, cell in zip(header, row):
                    named = "AUROC" in name
                    under_heading = "AUROC" in heading and name not in NOT_AUROC_COLUMNS and not name.startswith("acc")
                    if (named or under_heading) and not cell.startswith("–"):  # "–": no AUROC to show
                        found.append(cell)
        else:
            header = None
            if line.startswith("- ") and "AUROC" in line:
                found.append(line.split(": ", 1)[1])
    return found


def auroc_cells_lacking_n_and_interval(markdown: str) -> list[str]:
    """The AUROC cells that do not show an interval around their value and n a side; also
    those from fewer than ``SMOKE_TEST_BELOW`` examples a side that lack the smoke-test mark."""
    bad = []
    for cell in auroc_cells(markdown):
        m = AUROC_CELL.match(cell)
        if m is None:
            bad.append(cell)
            continue
        small = min(int(m["adv"]), int(m["ben"])) < SMOKE_TEST_BELOW
        if (m["mark"] == SMOKE_MARK) != small:
            bad.append(cell)
    return bad
