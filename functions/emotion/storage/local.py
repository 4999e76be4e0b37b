"""Local-disk storage for the embedded mode (``emotion serve``): ``{data_dir}/{inputs|results}/{key}``.

Presigned URLs point at the app's own stand-in endpoints (``POST /v1/uploads`` with S3's form fields,
``GET /v1/files/...``), signed with an HMAC key kept in ``data_dir`` so links survive a restart.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from emotion.storage.base import MAX_PRESIGN_S, PreconditionFailed, Role, policy_document

UPLOAD_PATH = "/v1/uploads"
FILES_PATH = "/v1/files"
LOCAL_BUCKET = "local"
MIN_KEY_BYTES = 32  # a shorter HMAC key is refused at start (an empty one would let anyone sign)


class SigningKeyError(RuntimeError):
    """The local signing key is missing, unreadable, empty or too short."""


def load_signing_key(path: Path) -> bytes:
    """The HMAC key in ``path``, created once and atomically when absent.

    A new key is written to a private temp file and hard-linked into place: the link fails if another
    process or thread won the race, and then its (complete) key is used, so no reader ever sees a partly
    written or empty file. A key that is empty or short raises :class:`SigningKeyError` (fail at start,
    never sign with a guessable key).
    """
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):  # another process or thread won: use its key
                os.link(tmp, path)  # atomic and exclusive: never replaces a key another process created
        finally:
            tmp.unlink(missing_ok=True)
    try:
        key = path.read_text().strip().encode()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the signing key {path.name} in the data directory: {exc}") from exc
    if len(key) < MIN_KEY_BYTES:
        raise SigningKeyError(
            f"the signing key {path.name} in the data directory holds {len(key)} bytes, fewer than "
            f"{MIN_KEY_BYTES}; delete it to have a new one created (links signed with it stop working)"
        )
    return key


class LocalStorage:
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        for role in ("inputs", "results"):
            (self.root / role).mkdir(parents=True, exist_ok=True)
        self._secret = load_signing_key(self.root / ".signing-key")

    def path(self, role: Role, key: str) -> Path:
        """The file behind a key; keys never escape their role's folder."""
        base = (self.root / role).resolve()
        target = (base / key).resolve()
        if base not in target.parents:
            raise ValueError(f"key outside storage: {key!r}")
        return target

    def get_bytes(self, role: Role, key: str) -> bytes | None:
        try:
            return self.path(role, key).read_bytes()
        except FileNotFoundError:
            return None

    def put_bytes(self, role: Role, key: str, data: bytes, content_type: str, if_absent: bool = False) -> None:
        target = self.path(role, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if if_absent:
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError as exc:
                raise PreconditionFailed(key) from exc
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # readers never see a half-written status record

    def size(self, role: Role, key: str) -> int | None:
        try:
            return self.path(role, key).stat().st_size
        except FileNotFoundError:
            return None

    def list_keys(self, role: Role, prefix: str) -> list[str]:
        base = (self.root / role).resolve()
        folder, _, stem = prefix.rpartition("/")
        directory = base / folder if folder else base
        if not directory.is_dir():
            return []
        return sorted(f"{folder}/{p.name}" if folder else p.name for p in directory.iterdir()
                      if p.is_file() and p.name.startswith(stem) and not p.name.startswith("."))

    def download(self, role: Role, key: str, path: Path) -> None:
        shutil.copyfile(self.path(role, key), path)

    def upload(self, role: Role, key: str, path: Path, content_type: str) -> None:
        target = self.path(role, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)

    # -- signing -------------------------------------------------------------------------------------------

    def sign(self, message: str) -> str:
        return hmac.new(self._secret, message.encode(), hashlib.sha256).hexdigest()

    def verify(self, message: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(message), signature or "")

    def presigned_post(self, key: str, content_type: str, size: int, expires_s: int) -> dict[str, Any]:
        policy = policy_document(key, content_type, size, min(expires_s, MAX_PRESIGN_S), LOCAL_BUCKET)
        policy_b64 = base64.b64encode(json.dumps(policy).encode()).decode()
        return {"url": UPLOAD_PATH, "fields": {
            "key": key, "Content-Type": content_type, "policy": policy_b64, "x-amz-signature": self.sign(policy_b64),
        }}

    def presigned_get(self, role: Role, key: str, expires_s: int) -> str:
        expires = int(time.time()) + expires_s
        signature = self.sign(f"{role}\n{key}\n{expires}")
        return f"{FILES_PATH}/{role}/{quote(key)}?expires={expires}&signature={signature}"

    def check_get(self, role: str, key: str, expires: int, signature: str) -> bool:
        return expires >= time.time() and self.verify(f"{role}\n{key}\n{expires}", signature)
