"""sd_notify: datagrams on a unix socket, no-ops outside systemd, watchdog only for our pid."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from appliance.artifact.sdnotify import Notifier, notifier_from_env


def test_messages_reach_the_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        n = notifier_from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"}, pid=os.getpid())
        assert n.enabled
        assert n.watchdog_interval_s == 5.0
        assert n.ready("listening on 127.0.0.1:1")
        assert n.watchdog()
        assert n.stopping()
        got = [server.recv(4096) for _ in range(3)]
    assert got == [b"READY=1\nSTATUS=listening on 127.0.0.1:1", b"WATCHDOG=1", b"STOPPING=1"]


def test_abstract_socket(tmp_path: Path) -> None:
    name = f"appliance-test-{os.getpid()}-{tmp_path.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert Notifier("@" + name).ready()
        assert server.recv(100) == b"READY=1"


def test_no_systemd_is_a_no_op(tmp_path: Path) -> None:
    n = notifier_from_env({})
    assert not n.enabled
    assert n.watchdog_interval_s is None
    assert not n.ready()
    assert not Notifier(str(tmp_path / "absent")).watchdog()  # send errors are swallowed


def test_watchdog_for_another_pid_is_ignored() -> None:
    n = notifier_from_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}, pid=2)
    assert n.watchdog_interval_s is None
    assert notifier_from_env({"NOTIFY_SOCKET": "vsock:1:2"}).enabled is False
