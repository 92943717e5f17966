"""``tweetwatch serve``: run the dashboard and the JSON API with uvicorn."""

from __future__ import annotations

import errno
import socket

import click

from stream.settings import Settings

_SHUTDOWN_S = 5


def check_port_free(host: str, port: int) -> None:
    """Fail with one line before uvicorn starts if the address is taken or unknown
    (uvicorn would log it among its start-up lines and exit)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise click.ClickException(f"cannot serve on {host}:{port}: {reason}") from None


def serve_forever(settings: Settings, host: str, port: int, log_level: str = "info") -> None:
    """Serve the store of ``settings`` on ``host:port`` until interrupted."""
    import uvicorn
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    from stream.web.app import create_app

    try:
        make_url(settings.database_url)
    except ArgumentError as exc:
        raise click.ClickException(f"invalid TWEETWATCH_DATABASE_URL: {exc}") from None
    check_port_free(host, port)
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    click.echo(f"tweetwatch dashboard on http://{shown}:{port}/ (API: /api/..., OpenAPI: "
               f"/docs); Ctrl-C stops", err=True)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=log_level == "debug",
        timeout_graceful_shutdown=_SHUTDOWN_S))
    # Live feeds never end by themselves: they end when the server starts shutting down.
    app.state.stopping = lambda: server.should_exit
    server.run()


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--database-url", default=None,
              help="Store to read [default: TWEETWATCH_DATABASE_URL].")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
def serve_command(host: str, port: int, database_url: str | None, loglevel: str) -> None:
    """Serve the dashboard (/) and the JSON API (/api/...) over the store."""
    from stream.cli_common import load_settings

    settings = load_settings(database_url=database_url)
    serve_forever(settings, host, port, loglevel)
