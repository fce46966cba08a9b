"""OpenAI-compatible HTTP server for MOD: per-request weights, dynamic batching, a playground page.

Install with `pip install moddecode[server]`; run with `moddecode serve CONFIG.yaml` or `run_server`.
"""

from .app import create_app
from .config import ServerSettings, load_server_config
from .serve import BackgroundServer, run_server

__all__ = ["create_app", "ServerSettings", "load_server_config", "BackgroundServer", "run_server"]
