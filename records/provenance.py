"""Checksums and package versions recorded with every stored result."""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata

TRACKED_PACKAGES = ("mlff-campaign", "torch", "numpy", "ase", "pymatgen", "chgnet", "sevenn", "vesin", "fireworks")
CHUNK_BYTES = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a result, plus the Python version."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
