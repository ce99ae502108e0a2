"""The ``hooks:`` section: the hook listener (off by default). Each source that takes hints has its
own ``hook_secret`` (in its own section, a secret like its password) and ``hook_auth``.

TLS: ``tls_cert_file`` and ``tls_key_file`` (PEM), or systemd credentials named ``hook-tls-cert`` and
``hook-tls-key``; both or neither. They are loaded when the config is, so a wrong pair is a config
error, not a failed start.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class HooksSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    # its own address: it may have to be reachable from the instance or a MID server, while the
    # health listener stays on loopback
    listen: str = "127.0.0.1:9465"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # hints (any request naming the source, refused or not) per second per source, and the burst
    rate_limit: float = Field(default=100.0, gt=0)
    burst: int = Field(default=200, ge=1)
    # seconds a signed timestamp may be away from the connector's clock; a signature seen within
    # it again is a replay
    replay_window: float = Field(default=300.0, ge=30, le=3600)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, e.g. 0.0.0.0:9465")
        return v

    @model_validator(mode="after")
    def _tls(self) -> HooksSettings:
        cert, key = self.tls_cert_file, self.tls_key_file
        if (cert is None) != (key is None):
            raise ValueError("tls_cert_file and tls_key_file go together (or neither: plain HTTP)")
        if cert is not None and key is not None:
            for name, path in (("tls_cert_file", cert), ("tls_key_file", key)):
                if not path.is_file():
                    raise ValueError(f"{name}: {path} not found (or not a file)")
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as e:
                raise ValueError(f"TLS: cannot load {cert} with its key {key}: {e.strerror or e}") from None
        return self

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    def tls_context(self) -> ssl.SSLContext | None:
        if self.tls_cert_file is None or self.tls_key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        return context
