"""Tracing proxy (mitmproxy addon), trace stores, and the scripted/replay model server."""
