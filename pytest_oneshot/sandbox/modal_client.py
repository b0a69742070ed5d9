"""Modal's client and the App every Sandbox of this backend belongs to (the sandbox's and its model gateway's).

The client is the ``modal`` package (``pip install 'pytest-oneshot[modal]'``), imported only here and
only when the modal backend is used; ``ONESHOT_MODAL_CLIENT`` names another module with the same surface
(the test suite's double of Modal's cloud).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from typing import Any, Final

from pytest_oneshot.errors import SandboxUnavailableError

__all__ = ["CLIENT_ENV", "TAG", "app_for", "modal_client"]

CLIENT_ENV: Final = "ONESHOT_MODAL_CLIENT"
TAG: Final = "oneshot"
"""Prefix of the tags on every Modal Sandbox of this backend."""


def modal_client() -> Any:
    """The ``modal`` module (or the one ``ONESHOT_MODAL_CLIENT`` names).

    Raises:
        SandboxUnavailableError: it is not installed.
    """
    name = os.environ.get(CLIENT_ENV) or "modal"
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise SandboxUnavailableError(
            f"the modal sandbox needs the Modal client ({exc}): pip install 'pytest-oneshot[modal]'"
        ) from None


_apps: dict[str, Any] = {}
_apps_lock = threading.Lock()


def app_for(modal: Any, options: Mapping[str, str]) -> Any:
    """The session's Modal App (``--oneshot-modal-app``, default ``pytest-oneshot``), looked up once.

    Raises:
        SandboxUnavailableError: no token (``modal token new``), or no answer from Modal.
    """
    name = options.get("modal_app") or "pytest-oneshot"
    with _apps_lock:
        if name not in _apps:
            try:
                _apps[name] = modal.App.lookup(name, create_if_missing=True)
            except modal.exception.Error as exc:
                raise SandboxUnavailableError(f"modal sandbox: cannot reach Modal App {name!r}: {exc}") from None
        return _apps[name]
