"""``python -m asrguard.cli``: the same as the ``asrguard`` command."""

from . import app

app()
