"""The tracing proxy: mitmdump's addon, the trace store and cleaner, the mitmdump launcher, the
``oneshot proxy|traces`` commands and the harness's recorder. Imports nothing of ``pytest_oneshot``."""
