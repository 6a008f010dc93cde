"""Throwaway keys and marks for the artifact tests (deterministic seeds; fast KDF)."""

from __future__ import annotations

import shutil

import pytest

from appliance.artifact import minisign

MINISIGN = shutil.which("minisign")
needs_minisign = pytest.mark.skipif(
    MINISIGN is None, reason="Debian's minisign is not installed (CI: apt-get install -y minisign)"
)
SDE = 1_700_000_000


def make_key(seed_byte: int) -> minisign.SecretKey:
    return minisign.keypair_from_seed(bytes([seed_byte]) * 8, bytes([seed_byte]) * 32)
