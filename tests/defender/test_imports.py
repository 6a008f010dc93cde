from __future__ import annotations

import subprocess
import sys

HEAVY = ("tree_sitter", "tree_sitter_bash", "httpx", "zstandard", "cryptography", "trio")


def test_importing_the_package_stays_cheap() -> None:
    code = (
        "import sys, appliance.defender as d; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules)); "
        "d.score_prompt('hi'); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    before, after = out.stdout.splitlines()
    assert before == ""
    assert after == ""


def test_sans_io_modules_import_no_io_libraries() -> None:
    modules = [
        "anchors",
        "prefilter",
        "normalise",
        "scoring",
        "shell_parse",
        "shell_tables",
        "shell_capabilities",
        "shell_risk",
        "policy",
        "verdicts",
    ]
    code = (
        "import sys; "
        + "; ".join(f"import appliance.defender.{m}" for m in modules)
        + f"; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""
