"""Optional dependencies: import them by name, or fail with one line naming the extra to install.

Every user-facing feature that needs an optional package (the torch backend, the converter, the
Ray engine, ``s3://`` locations, the trainer, the diffusers helpers) imports it through
:func:`require`, so a missing package reads ``the torch backend needs the '[torch]' extra: pip
install 'dwpose-ctrl[torch]'`` instead of a ``ModuleNotFoundError`` from deep inside a call.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional dependency of a feature is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the '[{extra}]' extra: pip install 'dwpose-ctrl[{extra}]' "
            f"({module} is not installed)",
            name=module,
        )
        self.module = module
        self.extra = extra
        self.purpose = purpose


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` and return it; raise :class:`MissingExtraError` if it (or its top package)
    is not installed. ``purpose`` names the feature, e.g. ``"the torch backend"``.

    A module that is installed but fails to import for another reason keeps its own error.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        missing = error.name or module
        if missing == module or module.startswith(missing + "."):
            raise MissingExtraError(missing.partition(".")[0], extra, purpose) from error
        raise
