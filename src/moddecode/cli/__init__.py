"""The `moddecode` command line. Errors become one line on stderr and a non-zero exit.

`app` (the console script `moddecode = "moddecode.cli:app"`) is built in `app.py`; the commands live in
`generate` (generate, demo), `train` (make-prefs, train), `serve` and `evaluate` (sweep, report), and
their shared helpers in `common`.
"""

from .app import app, main

__all__ = ["app", "main"]
