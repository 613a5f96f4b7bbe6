"""Content identities: a file's SHA-256, and a slide's cheap fingerprint (size, mtime, both ends)."""

from __future__ import annotations

import hashlib
from pathlib import Path

#: Bytes hashed at each end of a slide file for its fingerprint.
FINGERPRINT_BYTES = 1 << 20


def file_sha256(path: str | Path) -> str:
    """The SHA-256 (hex) of a file's bytes; raises OSError when it cannot be read."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def slide_fingerprint(path: str | Path) -> str:
    """A cheap identity of a slide's content: size, mtime and SHA-256 of its first and last MiB.

    A DICOM folder is fingerprinted by the names, sizes and mtimes of its files. Raises OSError
    when the path cannot be read.
    """
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(p.iterdir()):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.name}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
        return "dir-" + h.hexdigest()[:32]
    st = p.stat()
    h.update(f"{st.st_size}\0{int(st.st_mtime)}\0".encode())
    with open(p, "rb") as fh:
        h.update(fh.read(FINGERPRINT_BYTES))
        if st.st_size > FINGERPRINT_BYTES:
            fh.seek(max(FINGERPRINT_BYTES, st.st_size - FINGERPRINT_BYTES))
            h.update(fh.read(FINGERPRINT_BYTES))
    return h.hexdigest()[:32]
