"""PyInstaller entry point: the frozen ``appliance`` is exactly ``python -m appliance``."""

from __future__ import annotations

import os
import sys


def restore_host_library_path() -> None:
    """Give the programs we start (podman, conmon, ldd, systemctl, plugins) the host's library path.

    PyInstaller's bootloader points LD_LIBRARY_PATH at the bundle's ``_internal`` and keeps the original
    in LD_LIBRARY_PATH_ORIG; inherited, it makes host tools load our copies of libz/libcrypto/... (ldd
    then listed bundle paths for the runner image). The running process is not affected: the dynamic
    loader read the variable when it started.
    """
    original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original:
        os.environ["LD_LIBRARY_PATH"] = original
    else:
        os.environ.pop("LD_LIBRARY_PATH", None)


if __name__ == "__main__":
    restore_host_library_path()
    from appliance.cli.main import main

    sys.exit(main())
