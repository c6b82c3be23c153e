"""Object storage for received DICOM files.

The gateway writes through this interface only, so an object-store backend can
replace the filesystem later.  Keys are relative, slash-separated paths built
from validated UIDs; the filesystem backend refuses anything that could escape
its root.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO, Protocol

from django.conf import settings

_KEY_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class StorageError(Exception):
    """The object could not be stored (disk full, permissions...)."""


class ObjectStorage(Protocol):
    def staging_dir(self) -> Path:
        """Where the network layer writes incoming objects before they are put."""
        ...

    def put_file(self, source: Path, key: str) -> None:
        """Move a staged file to ``key`` atomically and durably (replacing any object)."""
        ...

    def move(self, source_key: str, dest_key: str) -> None:
        """Move a stored object to another key atomically and durably."""
        ...

    def open(self, key: str) -> BinaryIO: ...

    def exists(self, key: str) -> bool: ...


class FileSystemStorage:
    """Files under a root folder; a put is fsync + rename + fsync of the folder, so an
    object is either wholly there or not at all, even across a power cut."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._staging = root / ".staging"
        self._staging.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        parts = key.split("/")
        if not parts or not all(_KEY_PART.match(p) for p in parts):
            raise ValueError(f"unsafe storage key: {key!r}")
        return self.root.joinpath(*parts)

    def staging_dir(self) -> Path:
        return self._staging

    def put_file(self, source: Path, key: str) -> None:
        dest = self.path(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(source, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(source, dest)
            dir_fd = os.open(dest.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise StorageError(f"cannot store {key}: {exc.strerror or exc}") from exc

    def move(self, source_key: str, dest_key: str) -> None:
        self.put_file(self.path(source_key), dest_key)

    def open(self, key: str) -> BinaryIO:
        return self.path(key).open("rb")

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()


def default_storage() -> FileSystemStorage:
    return FileSystemStorage(Path(settings.DICOM_STORAGE_ROOT))


def instance_key(*, study_uid: str, series_uid: str, sop_uid: str, sha256: str) -> str:
    """The storage key of one version of an instance; the UIDs must already be
    validated.  The content's digest is part of the key, so a differing re-send (or
    two associations racing with the same UID) never overwrites a stored file; an
    identical re-send lands on the same key with the same bytes."""
    return f"studies/{study_uid}/{series_uid}/{sop_uid}.{sha256[:16]}.dcm"
