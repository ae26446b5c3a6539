"""The server's settings: one validated object, built by the CLI or by Python code."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

#: hard caps (the request schema's bounds); a server may set lower ones
MAX_K = 1000
MAX_HISTORY = 2000
MAX_BATCH = 256
MAX_ID_LENGTH = 256


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_dir: str
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    api_key: Optional[str] = Field(None, repr=False, description="required on every endpoint but /health")
    unknown_users: Literal["cold-start", "404"] = "cold-start"
    max_k: int = Field(100, ge=1, le=MAX_K)
    max_history: int = Field(1000, ge=1, le=MAX_HISTORY)
    max_batch: int = Field(64, ge=1, le=MAX_BATCH)
    max_body: int = Field(1 << 20, ge=1024, description="request body bytes")
    cors_origins: list[str] = Field(default_factory=list, description="CORS off unless origins are given")
    watch_s: float = Field(2.0, ge=0, description="poll MODEL_DIR for a new model this often (0 = never)")
    metrics: bool = True

    @staticmethod
    def read_key(path: Optional[Path]) -> Optional[str]:
        """The API key: the first line of ``path`` (a one-line error when unreadable or empty)."""
        from ..errors import ToprecError

        if path is None:
            return None
        try:
            key = Path(path).read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ToprecError(f"--api-key-file {path}: cannot read ({exc.__class__.__name__})") from None
        if not key or not key[0].strip():
            raise ToprecError(f"--api-key-file {path}: empty")
        return key[0].strip()
