"""Container run overhead: our ``sandbox run -- true`` vs bare ``podman run --rm <image> true``.

Prints medians (ms) of N interleaved runs and the ratio (target <= 1.2):
- ``ours``: one policy-checked run through the Podman backend (warm service, workspace mount, pipes,
  stdin gate, mount re-verification, OOM watch, remove) -- what the agent pays per tool call;
- ``ours-docker-api``: the same through the Docker API backend on Podman's compatible socket;
- ``bare``: ``podman run --rm <image> true`` as a subprocess (no service), same containers.conf;
- ``cli``: the whole ``python -m appliance.sandbox.cli sandbox run -- true`` process against the warm
  service (interpreter start + imports included), for information;
- ``warm``: a run through :class:`SandboxService` with the warm pool: the slot (created, started,
  runner at its gate, paused) is ready before each timed run (re-verify mounts, unpause, request,
  wait, remove); median and p95.

Also prints the runner image's size (``podman image inspect``).

Usage: ``python bench/bench_sandbox.py [-n 15]`` (root, podman installed; builds the image if needed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import trio

from appliance.config.settings import SandboxSettings, Settings
from appliance.sandbox.image import build_runner_image
from appliance.sandbox.podman import podman_env
from appliance.sandbox.policy import Limits
from appliance.sandbox.service import SandboxPaths, open_backend, open_sandbox_service, run_in_sandbox


def _paths(root: str, runtime_dir: str) -> SandboxPaths:
    return SandboxPaths(
        data_dir=os.path.join(root, "data"),
        runtime_dir=runtime_dir,
        workspaces=os.path.join(root, "ws"),
        mount_allowlist=os.path.join(root, "conf", "mount-allowlist"),
        egress_allowlist=os.path.join(root, "conf", "egress-allowlist"),
        image_file=os.path.join(root, "data", "sandbox", "runner-image"),
        protected=(os.path.join(root, "data"),),
        home=root,
    )


def _write_image_file(paths: SandboxPaths, image: str) -> None:
    """What ``build-image`` records, so the CLI variant finds the image."""
    os.makedirs(os.path.dirname(paths.image_file), exist_ok=True)
    with open(paths.image_file, "w", encoding="utf-8") as f:
        f.write(image + "\n")


async def _bench(n: int) -> None:
    runtime_dir = tempfile.mkdtemp(prefix="sbx-bench-", dir="/run" if os.geteuid() == 0 else None)
    env = podman_env(runtime_dir)
    image = build_runner_image(podman_env=env).tag
    root = tempfile.mkdtemp(prefix="sbx-bench-home-")
    paths = _paths(root, runtime_dir)
    limits = Limits(timeout_s=60)
    data = os.path.join(root, "data")
    _write_image_file(paths, image)
    times: dict[str, list[float]] = {"ours": [], "ours-docker-api": [], "bare": [], "cli": [], "warm": []}
    async with open_backend("podman", runtime_dir=runtime_dir) as podman:
        socket = podman.socket  # type: ignore[attr-defined]
        async with open_backend("docker", socket=socket, runtime_dir=runtime_dir) as docker:
            for i in range(n + 1):  # the first round warms caches and is dropped
                for name, backend in (("ours", podman), ("ours-docker-api", docker)):
                    t0 = time.perf_counter()
                    result = await run_in_sandbox(
                        backend, paths, group="main", argv=["true"], limits=limits, image=image
                    )
                    elapsed = time.perf_counter() - t0
                    assert result.exit_code == 0, result
                    if i:
                        times[name].append(elapsed)
                t0 = time.perf_counter()
                # cwd: conmon may leave an "oom" marker file in the working directory
                await trio.run_process(["podman", "run", "--rm", image, "true"], env=env, cwd=data)
                if i:
                    times["bare"].append(time.perf_counter() - t0)
                cli = [sys.executable, "-m", "appliance.sandbox.cli", "sandbox", "run", "--data-dir", data]
                t0 = time.perf_counter()
                await trio.run_process(
                    [*cli, "--socket", socket, "--", "true"], capture_stderr=True, capture_stdout=True
                )
                if i:
                    times["cli"].append(time.perf_counter() - t0)
            settings = Settings(
                data_dir=data, sandbox=SandboxSettings(image=image, timeout_s=60, warm_pool=True)
            )
            async with open_sandbox_service(settings, paths=paths, engine=podman, prewarm=False) as service:
                for i in range(n + 1):
                    assert await service.prewarm(wait=True)
                    t0 = time.perf_counter()
                    result = await service.run(group="main", argv=["true"])
                    elapsed = time.perf_counter() - t0
                    assert result.exit_code == 0, result
                    assert result.warm, result
                    if i:
                        times["warm"].append(elapsed)
    size = await trio.run_process(
        ["podman", "image", "inspect", "--format", "{{.Size}}", image], env=env, capture_stdout=True
    )
    medians = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"runner image {image} ({int(size.stdout) / 1e6:.1f} MB); n={n} (median ms, interleaved)")
    for name, value in medians.items():
        spread = f"{min(times[name]) * 1000:.0f}-{max(times[name]) * 1000:.0f}"
        print(f"  {name:16} {value:7.1f} ms   (range {spread})")
    print(f"ratio ours / bare           = {medians['ours'] / medians['bare']:.2f}   (target <= 1.2)")
    print(f"ratio ours-docker-api / bare = {medians['ours-docker-api'] / medians['bare']:.2f}")
    print(
        f"ratio cli / bare            = {medians['cli'] / medians['bare']:.2f}   (includes Python start-up)"
    )
    warm = sorted(times["warm"])
    p95 = warm[min(len(warm) - 1, round(0.95 * (len(warm) - 1)))] * 1000
    print(
        f"warm pool: median {medians['warm']:.1f} ms, p95 {p95:.1f} ms; ratio warm / bare = "
        f"{medians['warm'] / medians['bare']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=15, help="measured runs per variant (>= 10)")
    args = parser.parse_args()
    trio.run(_bench, max(10, args.n))


if __name__ == "__main__":
    main()
