"""What every command shares: one `error:` line instead of a traceback, quiet libraries, flag parsing."""

from __future__ import annotations

import os

import typer

from ..errors import ConfigError, ModDecodeError


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def quiet_libraries() -> None:
    """Keep the terminal for our output: no per-load progress bars or advisory warnings from transformers."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def run_guarded(fn):
    """Run fn, turning user errors into one clear line (set MODDECODE_DEBUG=1 for tracebacks)."""
    try:
        quiet_libraries()
        return fn()
    except typer.Exit:
        raise
    except (ModDecodeError, OSError) as exc:
        if os.environ.get("MODDECODE_DEBUG"):
            raise
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - last resort: still no traceback for users
        if os.environ.get("MODDECODE_DEBUG"):
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (rerun with MODDECODE_DEBUG=1 for details)", 1)


def parse_weights(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--weights must be comma-separated numbers like 0.3,0.7; got {text!r}") from None


def split_named(values: list[str], flag: str, usage: str | None = None) -> dict[str, str]:
    """{name: value} of NAME=VALUE options; `usage` is the advice an item without a name gets."""
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            if usage:
                raise ConfigError(f"{flag} {item!r}: {usage}")
            raise ConfigError(f"{flag} takes NAME=VALUE (NAME being a --policy name), got {item!r}")
        out[name.strip()] = value
    return out
