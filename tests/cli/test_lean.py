from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_trio_imports_without_loading_ssl_and_ssl_still_works_when_used() -> None:
    out = _run(
        """
        import sys
        from appliance.cli.lean import defer_module, is_deferred
        assert defer_module("ssl")
        import trio
        import trio._ssl as trio_ssl
        print(is_deferred("ssl"), "_ssl" in sys.modules)
        ctx = trio_ssl._stdlib_ssl.create_default_context()   # the module trio bound is the placeholder
        import ssl
        print(is_deferred("ssl"), isinstance(ctx, ssl.SSLContext), trio_ssl._stdlib_ssl.SSLContext is ssl.SSLContext)
        """
    )
    assert out.splitlines() == ["True False", "False True True"]


def test_an_already_imported_module_is_left_alone() -> None:
    out = _run(
        """
        import json
        from appliance.cli.lean import defer_module, is_deferred
        print(defer_module("json"), is_deferred("json"))
        """
    )
    assert out == "False False"


def test_a_failing_import_raises_and_keeps_the_placeholder() -> None:
    out = _run(
        """
        import sys
        from appliance.cli.lean import defer_module, is_deferred
        defer_module("no_such_module_here")
        placeholder = sys.modules["no_such_module_here"]
        try:
            placeholder.anything
        except ModuleNotFoundError:
            print("raised", is_deferred("no_such_module_here"))
        """
    )
    assert out == "raised True"


def test_lean_serve_imports_keep_hashing_working_without_openssl() -> None:
    out = _run(
        """
        import sys
        from appliance.cli.lean import lean_serve_imports
        lean_serve_imports()
        import hashlib, hmac, secrets
        import wsproto.utilities
        token = wsproto.utilities.generate_accept_token(b"dGhlIHNhbXBsZSBub25jZQ==")
        print(token.decode(), hashlib.sha256(b"x").hexdigest()[:8], hmac.compare_digest("a", "a"))
        print("_hashlib" in sys.modules and sys.modules["_hashlib"] is None)
        """
    )
    # RFC 6455's worked example: the accept token for that key
    assert out.splitlines() == ["s3pPLMBiTxaQ9kYGzzhZRbK+xOo= 2d711642 True", "True"]
