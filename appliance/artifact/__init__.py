"""The shipped artifact: a deterministic bundle archive, a canonical manifest and a minisign signature.

Layout: ``minisign`` (key and signature formats), ``manifest`` (model + canonical bytes), ``keys`` (trust set
and key rotation) and ``policy`` (the device-side checks) are sans-IO; ``archive`` and ``release`` touch
files; ``sdnotify`` talks to systemd; ``cli`` is the operator's handle.
"""

from __future__ import annotations

from appliance.artifact.errors import ArtifactRejected, BadKey, BadPassphrase, BadSignature, RejectReason

__all__ = ["ArtifactRejected", "BadKey", "BadPassphrase", "BadSignature", "RejectReason"]
