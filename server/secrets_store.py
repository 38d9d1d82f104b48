"""The server secret: ``RUANG_SECRET_KEY``, else 32 random bytes persisted in the data dir.

Purpose-specific keys are derived from it with HKDF, so one secret never serves two uses.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_FILE = "secret.key"  # noqa: S105 - a file name


class SecretError(RuntimeError):
    """The server secret could not be read or created."""


def load_or_create_secret(configured: str, data_dir: Path) -> bytes:
    if configured:
        if len(configured) < 32:
            raise SecretError("RUANG_SECRET_KEY must be at least 32 characters")
        return configured.encode()
    path = data_dir / SECRET_FILE
    try:
        if path.exists():
            raw = path.read_text().strip()
            value = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            if len(value) < 32:
                raise SecretError(f"{path} is damaged: expected 32 bytes")
            return value
        value = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.urlsafe_b64encode(value).decode().rstrip("=") + "\n")
        return value
    except FileExistsError:
        return load_or_create_secret(configured, data_dir)
    except OSError as exc:
        raise SecretError(f"cannot read or create {path}: {exc.strerror}") from None


def derive_key(secret: bytes, purpose: str, length: int = 32) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=b"ruang/server", info=purpose.encode()
    ).derive(secret)
