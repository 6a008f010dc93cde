"""The public keys compiled into the binary: artifacts and key rotations must be signed by one of them.

Replace a key only through a signed key-rotation manifest (``appliance artifact rotate``) on deployed
devices; edit this list for new builds. Each entry is the base64 line of a minisign ``.pub`` file.

The key below is a DEVELOPMENT key generated on the build box on 2026-11-23 (scrypt "sensitive" KDF,
passphrase-protected). Generate the production key offline and put its public line here before a release.
"""

from __future__ import annotations

__all__ = ["EMBEDDED_PUBLIC_KEYS"]

EMBEDDED_PUBLIC_KEYS: tuple[str, ...] = ("RWShGd9dXAIfYWXR/bs5n11B1+dNcswxh6L3GOSyNPFdnIrz/3X3Cnpx",)
