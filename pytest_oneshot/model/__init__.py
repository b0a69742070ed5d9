"""Everything between an agent and its model, on the harness's side.

``gateway`` (one per process: a route per trial, key, token count, price, trace) runs every request
through ``limiter`` (the loopback forwarder that counts tokens and enforces the limit); ``replay``
serves a task's ``cassette`` from the ``scripted`` Responses-API server; ``catalog`` tells codex
about any model name. ``serving`` runs the two HTTP servers (aiohttp) behind a synchronous API.
"""
