"""Running the app: `run_server` (what `moddecode serve` calls) and `BackgroundServer` (tests, benchmarks)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Mapping

from ..errors import ConfigError
from .app import create_app
from .config import load_server_config
from .middleware import is_ip

log = logging.getLogger("moddecode.server")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
API_KEY_ENV = "MODDECODE_API_KEY"


def build_app(config: str | Path | Mapping, *, api_key: str | None = None, cache=None,
              allowed_hosts: list[str] | tuple[str, ...] = (), engine: str | None = None):
    """Load a policy set (YAML path or mapping) with its `server:` settings and create the app.

    `allowed_hosts` add to the set's `server.allowed_hosts`; `engine` replaces the set's `engine:`."""
    mod, meta, settings = load_server_config(config, cache=cache, engine=engine)
    settings = replace(settings, allowed_hosts=(*settings.allowed_hosts, *allowed_hosts))
    return create_app(mod, meta, settings, api_key=api_key)


def resolve_api_key(api_key: str | None = None, api_key_file: str | Path | None = None) -> str | None:
    """The API key: given directly, else read from `api_key_file` (surrounding whitespace dropped), else
    $MODDECODE_API_KEY; None when there is none."""
    if api_key is not None and api_key_file is not None:
        raise ConfigError("give the API key once: --api-key or --api-key-file, not both")
    if api_key_file is not None:
        path = Path(api_key_file).expanduser()
        try:
            api_key = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the API key file {path}: {exc}") from None
        if not api_key:
            raise ConfigError(f"the API key file {path} is empty; put the key in it")
    elif api_key is None:
        api_key = os.environ.get(API_KEY_ENV) or None
    if api_key is not None and (not api_key.strip() or any(c.isspace() for c in api_key)):
        raise ConfigError("the API key must be non-empty and contain no spaces (clients send it in a header)")
    return api_key


def run_server(config_path: str | Path, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
               log_level: str = "info", *, api_key_file: str | Path | None = None,
               allowed_hosts: list[str] | tuple[str, ...] = (), engine: str | None = None) -> None:
    """Serve the policy set in `config_path` (on `engine`, default: the set's `engine:`) until interrupted.

    The API key is `api_key`, else the contents of `api_key_file`, else $MODDECODE_API_KEY. Requests
    are answered for Host names localhost, IP addresses, `host` and `allowed_hosts` (plus the set's
    `server.allowed_hosts`).
    """
    import uvicorn

    api_key = resolve_api_key(api_key, api_key_file)
    if host not in LOOPBACK and api_key is None:
        log.warning("listening on %s without an API key: anyone who can reach this address can use the models; "
                    "set $%s or pass --api-key-file", host, API_KEY_ENV)
    names = [*allowed_hosts, *([host] if host and not is_ip(host) else [])]  # IP addresses are always allowed
    app = build_app(config_path, api_key=api_key, allowed_hosts=names, engine=engine)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


class BackgroundServer:
    """Serve an app on a free loopback port in a daemon thread; a context manager that always stops it.

        with BackgroundServer(create_app(mod)) as server:
            OpenAI(base_url=server.url + "/v1", api_key="-")...
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.app = app
        self.host = host
        self.port = port
        self.log_level = log_level
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 600.0) -> "BackgroundServer":
        import uvicorn

        # Bind here (port 0 = any free port) and hand the socket over: no race for the port number.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level=self.log_level, lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name=f"moddecode-server-{self.port}")
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server on {self.url} did not start within {timeout:g} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
