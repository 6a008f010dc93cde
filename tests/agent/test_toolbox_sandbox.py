"""The agent's exec tool and the sandbox service: one long-lived service routes every exec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import trio

from appliance.agent.toolbox import ExecOutput, sandbox_runner
from appliance.config.settings import SandboxSettings, Settings
from appliance.runtime.services import _sandbox_for
from appliance.sandbox.backend import RunResult
from appliance.sandbox.service import SandboxService


class FakeService:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def run(self, **kw: Any) -> RunResult:
        self.calls.append(kw)
        return RunResult(
            exit_code=2, stdout=b"out\xff", stderr=b"err", timed_out=True, oom_killed=False, duration_ms=5
        )


async def test_exec_runs_sh_c_through_the_given_service() -> None:
    service = FakeService()
    run = sandbox_runner(Settings(), service)  # type: ignore[arg-type]
    with trio.fail_after(10):
        out = await run("echo hi", "fam")
    assert out == ExecOutput(2, "out\ufffd", "err", True)
    assert service.calls == [{"group": "fam", "argv": ["sh", "-c", "echo hi"]}]


@attrs.define
class _Toolbox:
    run_exec: Any = None


@attrs.define
class _Runtime:
    toolbox: _Toolbox = attrs.Factory(_Toolbox)


async def test_services_hold_one_sandbox_service_for_exec(tmp_path: Path) -> None:
    """With an engine configured the services open the sandbox service (lazily: no engine contact until
    the first exec, as warm_pool is off) and point exec at it; with none they leave exec alone."""
    runtime = _Runtime()
    with trio.fail_after(10):
        async with _sandbox_for(Settings(data_dir=str(tmp_path)), runtime):  # type: ignore[arg-type]
            assert runtime.toolbox.run_exec is None
        settings = Settings(data_dir=str(tmp_path), sandbox=SandboxSettings(backend="podman"))
        async with _sandbox_for(settings, runtime):  # type: ignore[arg-type]
            run_exec = runtime.toolbox.run_exec
            assert callable(run_exec)
            service = next(
                cell.cell_contents
                for cell in run_exec.__closure__ or ()
                if isinstance(cell.cell_contents, SandboxService)
            )
            assert service.warm_pool is False
            assert service.pool is None
