"""What the harness (``pytest_oneshot``) and the tracing proxy (``proxy``) both use, and nothing else.

The two sides never import each other; this package is their only common ground. It imports the
standard library only, because mitmdump's addon loads its files by path from mitmproxy's own venv.
"""
