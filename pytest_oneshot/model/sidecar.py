"""The model gateway as a program of its own, run in a sidecar Sandbox beside a remote agent's.

A Sandbox in Modal's cloud cannot reach the harness's gateway on this machine's loopback, and
handing it the API key would let the agent (root in its Sandbox) read it. So for such an agent the
same :class:`TokenLimiter` runs here, in a Sandbox of its own (:mod:`pytest_oneshot.sandbox.modal_gateway`
starts it): one route, at ``/r/<token>`` on ``--port`` (exposed through Modal's tunnel); it adds the
key, counts tokens and enforces the limit exactly as on this machine. The key and the route's token
come from the environment, an ephemeral Secret of this process only (:data:`KEY_ENV`,
:data:`TOKEN_ENV`), never from an argument. The route's counts are written to ``--journal`` on every
change, before the agent sees its effect, and the harness reads them with a command.

``--cassette FILE`` replays a recorded session from a scripted server on this Sandbox's own loopback
(``--oneshot-model=replay``): the cassette server on the harness's machine is out of reach too, and
a replayed sidecar needs no network at all.
"""

from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path
from typing import Final

from pytest_oneshot.model.cassette import load_cassette
from pytest_oneshot.model.limiter import TokenLimiter
from pytest_oneshot.model.scripted import ScriptedResponsesServer

__all__ = ["KEY_ENV", "TOKEN_ENV", "main"]

KEY_ENV: Final = "ONESHOT_GATEWAY_KEY"
"""The model API key (unset: none is sent upstream)."""
TOKEN_ENV: Final = "ONESHOT_GATEWAY_TOKEN"
"""The route's token: the only thing the agent is given."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve one route of the model gateway (token count and limit)")
    parser.add_argument("--port", type=int, required=True, help="Port to listen on, on every interface")
    parser.add_argument("--journal", type=Path, required=True, help="File the route's counts are written to")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--upstream", help="Responses API base URL the route forwards to")
    source.add_argument("--cassette", type=Path, help="Cassette replayed from a scripted server on loopback")
    parser.add_argument("--limit", type=int, default=None, help="Total tokens after which requests are refused")
    args = parser.parse_args(argv)
    upstream = args.upstream
    if args.cassette is not None:
        upstream = ScriptedResponsesServer().start().add_script("replay", load_cassette(args.cassette))
    limiter = TokenLimiter(host="0.0.0.0", port=args.port).start()  # every interface: the tunnel's end
    limiter.add_route(
        upstream,
        limit=args.limit,
        api_key=os.environ.get(KEY_ENV) or None,
        token=os.environ[TOKEN_ENV],
        journal=args.journal,
    )
    threading.Event().wait()  # serve until the Sandbox is terminated


if __name__ == "__main__":
    main()
