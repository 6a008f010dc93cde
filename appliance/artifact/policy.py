"""May this artifact be installed here? The device-side checks, in order, as pure functions.

Order matters: (1) the signature over the manifest's exact bytes, by a trusted key; (2) parse those bytes;
(3) the trusted comment names the same release; (4) expiry against the given ``now`` (freeze protection:
needs a synced clock, the caller decides); (5) arch; (6) version rules: the new version must not be below
the device's floor (anti-rollback; by default the installed version) and the installed version must be
at least the manifest's ``min_version``; (7) the archive's size and sha256, computed by the caller.
"""

from __future__ import annotations

import attrs

from appliance.artifact.errors import ArtifactRejected, BadSignature, RejectReason
from appliance.artifact.keys import TrustSet, verify_signed
from appliance.artifact.manifest import Manifest, format_time, parse_manifest, parse_version

__all__ = ["UpdateContext", "check_archive", "check_manifest"]


@attrs.frozen
class UpdateContext:
    """What the device knows: the clock, its version, its anti-rollback floor and its architecture."""

    now: int
    installed_version: str | None = None  # None: a fresh install (no min_version check)
    floor_version: str | None = None  # None: the installed version is the floor
    arch: str | None = None  # None: any (e.g. an operator checking on a build box)
    allow_downgrade: bool = False  # an explicit, operator-approved rollback


def check_manifest(
    trust: TrustSet, manifest_bytes: bytes, signature_text: str, ctx: UpdateContext
) -> Manifest:
    """Return the verified manifest or raise :class:`ArtifactRejected` naming the first failed check."""
    _key, comment = verify_signed(trust, manifest_bytes, signature_text)
    manifest = parse_manifest(manifest_bytes)
    if comment != manifest.trusted_comment:
        raise BadSignature("trusted comment does not match the manifest")
    if ctx.now >= manifest.expires:
        raise ArtifactRejected(
            f"manifest expired at {format_time(manifest.expires)}",
            reason=RejectReason.EXPIRED,
            details={"expires": format_time(manifest.expires), "now": format_time(ctx.now)},
        )
    if ctx.arch is not None and ctx.arch != manifest.arch:
        raise ArtifactRejected(
            f"artifact is for {manifest.arch}, this device is {ctx.arch}", reason=RejectReason.WRONG_ARCH
        )
    floor = ctx.floor_version or ctx.installed_version
    if (
        floor is not None
        and not ctx.allow_downgrade
        and parse_version(manifest.version) < parse_version(floor)
    ):
        raise ArtifactRejected(
            f"version {manifest.version} is below the minimum accepted {floor}",
            reason=RejectReason.DOWNGRADE,
            details={"version": manifest.version, "floor": floor},
        )
    if ctx.installed_version is not None and parse_version(ctx.installed_version) < parse_version(
        manifest.min_version
    ):
        raise ArtifactRejected(
            f"installed {ctx.installed_version} is older than {manifest.min_version}, the oldest that may "
            f"update to {manifest.version}",
            reason=RejectReason.TOO_OLD_TO_UPDATE,
        )
    return manifest


def check_archive(manifest: Manifest, size: int, sha256: str) -> None:
    if size != manifest.archive.size or sha256 != manifest.archive.sha256:
        raise ArtifactRejected(
            "archive does not match the signed manifest",
            reason=RejectReason.ARCHIVE_MISMATCH,
            details={"expected_sha256": manifest.archive.sha256, "sha256": sha256, "size": size},
        )
