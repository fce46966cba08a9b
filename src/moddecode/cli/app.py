"""The `moddecode` Typer app: each command lives in the module of its concern and is registered here."""

from __future__ import annotations

import typer

from . import evaluate, generate, serve, train

app = typer.Typer(
    help="Decoding-time multi-objective alignment (MOD): combine policies tuned for different objectives, "
    "weighted per request, with no retraining.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# the order of `moddecode --help`
app.command("generate")(generate.generate)
app.command("demo")(generate.demo)
app.command("make-prefs")(train.make_prefs_command)
app.command("train")(train.train)
app.command("serve")(serve.serve)
evaluate.register(app)  # sweep, report


def main() -> None:  # pragma: no cover - console entry point
    app()
