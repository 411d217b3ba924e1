"""A file's content hash, as the replication wire names content: SHA-256 in hex."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_hash(path: Path | str) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None
    return h.hexdigest()
