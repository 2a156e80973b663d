"""A production WSGI server (waitress: pure Python, threads) for the API and the Inngest
function, started in a thread and stopped cleanly."""

from __future__ import annotations

import logging
import threading
from typing import Any

from waitress import wasyncore
from waitress.server import create_server


class Server:
    """`app` served on host:port (0 picks a free port) by `threads` worker threads."""

    def __init__(self, app: Any, host: str, port: int, threads: int = 8) -> None:
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # no line per busy spell
        sockets: dict = {}  # waitress's socket map: closed here if the server cannot start
        try:
            self._server = create_server(
                app,
                map=sockets,
                host=host,
                port=port,
                threads=threads,
                channel_timeout=3600,  # server-sent event streams stay open
                clear_untrusted_proxy_headers=True,
                ident="prcapture",
            )
        except BaseException:
            wasyncore.close_all(sockets)
            raise
        self.host = host
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="wsgi")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Closes the listening socket and every open connection, then the workers."""
        if self._thread.is_alive():  # closed inside the server's loop, woken by its trigger
            self._server.trigger.pull_trigger(lambda: wasyncore.close_all(self._server._map))
            self._thread.join(timeout=10)
        else:
            wasyncore.close_all(self._server._map)
        self._server.task_dispatcher.shutdown(timeout=5)
