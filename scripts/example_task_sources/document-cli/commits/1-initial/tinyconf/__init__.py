"""Read and write small ``key = value`` config files with ``[sections]``."""

from tinyconf.core import ConfigError, convert, dump, get, load, parse

__all__ = ["ConfigError", "convert", "dump", "get", "load", "parse"]
