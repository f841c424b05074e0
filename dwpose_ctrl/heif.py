"""HEIC/HEIF photos (iPhone's default format), decoded through the pillow-heif plugin when installed.

Pillow cannot read HEIF by itself. With the ``heif`` extra (``pip install 'dwpose-ctrl[heif]'``,
which installs pillow-heif) :func:`enable_heif` registers pillow-heif's opener with Pillow once,
and HEIF files are read like any other image (EXIF orientation applied). Without it, folders'
HEIF files are listed as not processed, with :data:`HEIF_MISSING` as the reason, never dropped
without a word.
"""

from __future__ import annotations

import threading

HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})
HEIF_MISSING = (
    "HEIC/HEIF image: reading it needs the pillow-heif plugin, which is not installed; "
    "pip install 'dwpose-ctrl[heif]'"
)
_lock = threading.Lock()
_enabled: bool | None = None


def enable_heif() -> bool:
    """Register pillow-heif's HEIF opener with Pillow (once); False when pillow-heif is not installed."""
    global _enabled
    with _lock:
        if _enabled is None:
            try:
                import pillow_heif
            except ImportError:
                _enabled = False
            else:
                pillow_heif.register_heif_opener()
                _enabled = True
        return _enabled


HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})


def looks_like_heif(data: bytes) -> bool:
    """Whether file bytes start like a HEIF file: an ``ftyp`` box with a HEIF major brand (not AVIF)."""
    return data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS
