"""`moddecode serve`: the OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import run_guarded


def serve(
    config: Path = typer.Argument(..., help="YAML policy set (see examples/server.yaml); its `server:` section sets limits."),
    host: str = typer.Option("127.0.0.1", help="Address to bind. Anything but loopback should come with an API key."),
    port: int = typer.Option(8000, help="Port to listen on."),
    api_key: Optional[str] = typer.Option(
        None, "--api-key", help="Require 'Authorization: Bearer KEY'. Warning: other users of this machine can "
                                "read it in `ps`; prefer $MODDECODE_API_KEY or --api-key-file."),
    api_key_file: Optional[Path] = typer.Option(
        None, "--api-key-file", help="Read the API key from this file (default: $MODDECODE_API_KEY)."),
    engine: Optional[str] = typer.Option(
        None, "--engine", help="What runs the models: 'transformers' (in this process) or 'vllm' (vLLM's async "
                               "engine; needs `bash scripts/setup.sh --vllm`). Default: the policy set's `engine:`, "
                               "else transformers."),
    allowed_hosts: Optional[str] = typer.Option(
        None, "--allowed-hosts", help="Comma-separated Host names to answer besides localhost, IP addresses and "
                                      "--host, e.g. gpu-box.lan,*.example.com ('*': any). Others get 421 "
                                      "(protection against DNS rebinding)."),
) -> None:
    """Serve an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models) with per-request
    `weights` and `divergence`, and a playground page at /."""

    def go():
        import logging

        from ..server import run_server

        if api_key is not None:
            logging.getLogger("moddecode.server").warning(
                "--api-key is visible to every user of this machine (`ps`); prefer $MODDECODE_API_KEY or --api-key-file")
        hosts = [h.strip() for h in (allowed_hosts or "").split(",") if h.strip()]
        run_server(config, host=host, port=port, api_key=api_key, api_key_file=api_key_file, allowed_hosts=hosts,
                   engine=engine)

    run_guarded(go)
