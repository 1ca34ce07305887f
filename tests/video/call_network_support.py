"""Harness for the call client on real networks: a daphne process that can be killed and started again on the
same port, a network namespace joined to this one by a veth pair (whose link the test shapes with tc's tbf
qdisc and nftables' random drop), Chromium started inside that namespace, and the call's pages.

Everything here acts on the real kernel: it needs root (CI runs as root). Names carry a random suffix so that
two runs on one machine never touch each other's namespaces, links or tables; teardown removes them even when
the test failed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connections

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, require_service
from tests.video.daphne_processes import daphne_env

STATS = "() => window.teleconsultCall.stats()"


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# --- daphne ---


@dataclass
class Daphne:
    """`python -m teleconsult.daphne_main` (daphne on uvloop, as production runs it) on the test database and Redis;
    kill() and start() again keep the port, so the pages' websockets reconnect to the new process as they would
    after a server restart.
    It listens on 127.0.0.1 and on `also` (the veth pair's address, for a page inside a namespace)."""

    redis_url: str
    also: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def inner_url(self) -> str:
        """The address a page inside the namespace loads from."""
        assert self.also is not None
        return f"http://{self.also}:{self.port}"

    def _env(self) -> dict[str, str]:
        return daphne_env(self.redis_url, self.extra_env)

    def start(self) -> None:
        if not self.port:
            self.port = free_port()
        listen = ["-b", "127.0.0.1", "-p", str(self.port)]
        if self.also:
            listen += ["-e", f"tcp:port={self.port}:interface={self.also}"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "teleconsult.daphne_main", *listen, "teleconsult.asgi:application"],
            cwd=settings.BASE_DIR,
            env=self._env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.starts += 1
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("daphne did not start") from None
                time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would end it: no websocket is closed, no disconnect handler runs."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        connections.close_all()


# --- a network namespace behind a veth pair ---


def require_netns() -> None:
    """Skip (or fail in CI) when this process may not create network namespaces."""
    if not shutil.which("ip") or not shutil.which("tc") or not shutil.which("nft"):
        require_service("iproute2 (ip, tc) and nftables are needed for shaped-link tests")
    if os.geteuid() != 0:
        require_service("network namespaces, tc and nftables need root")
    probe = f"tcprobe{secrets.token_hex(3)}"
    made = run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        require_service(f"`ip netns add` is not permitted here: {made.stderr.strip()}")
    run("ip", "netns", "del", probe, check=False)


@dataclass
class Namespace:
    """A network namespace whose only way out is a veth pair to this one, on a private /30.

    `host_ip` is the root namespace's end (daphne listens there too), `inner_ip` the new namespace's. Shaping
    acts on both directions: tbf on the egress of each end, and an nftables table on each side dropping a share
    of the UDP packets that arrive over the pair.
    """

    name: str
    host_veth: str
    inner_veth: str
    host_ip: str
    inner_ip: str
    table: str
    workdir: Path

    @classmethod
    def create(cls, workdir: Path) -> Namespace:
        suffix = secrets.token_hex(3)
        third = secrets.randbelow(250) + 1
        fourth = secrets.randbelow(60) * 4
        space = cls(
            name=f"tcnet{suffix}",
            host_veth=f"tch{suffix}",
            inner_veth=f"tci{suffix}",
            host_ip=f"10.213.{third}.{fourth + 1}",
            inner_ip=f"10.213.{third}.{fourth + 2}",
            table=f"tcnet{suffix}",
            workdir=workdir,
        )
        try:
            run("ip", "netns", "add", space.name)
            run("ip", "link", "add", space.host_veth, "type", "veth", "peer", "name", space.inner_veth)
            run("ip", "link", "set", space.inner_veth, "netns", space.name)
            run("ip", "addr", "add", f"{space.host_ip}/30", "dev", space.host_veth)
            run("ip", "link", "set", space.host_veth, "up")
            space.inside("ip", "addr", "add", f"{space.inner_ip}/30", "dev", space.inner_veth)
            space.inside("ip", "link", "set", space.inner_veth, "up")
            space.inside("ip", "link", "set", "lo", "up")
        except BaseException:
            space.destroy()
            raise
        return space

    def inside(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.name, *command, check=check)

    def chromium_wrapper(self) -> Path:
        """An executable that starts Debian's Chromium inside the namespace, for Playwright's executable_path."""
        wrapper = self.workdir / f"chromium-in-{self.name}"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {self.name} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        return wrapper

    def shape(self, *, rate: str, burst: str, latency: str, loss_percent: int) -> None:
        """Both directions: at most `rate` with a queue of `latency` (tbf), and `loss_percent` of UDP dropped."""
        tbf = ("root", "tbf", "rate", rate, "burst", burst, "latency", latency)
        run("tc", "qdisc", "replace", "dev", self.host_veth, *tbf)
        self.inside("tc", "qdisc", "replace", "dev", self.inner_veth, *tbf)
        self._drop(f"numgen random mod 100 < {loss_percent}" if loss_percent else None)

    def block(self) -> None:
        """Every UDP packet over the pair is dropped (the media path is gone; the websocket, over TCP, stays)."""
        self._drop("")

    def unblock(self) -> None:
        self._delete_table()

    def _drop(self, condition: str | None) -> None:
        """UDP crossing the pair is dropped where it arrives: at this end's input hook for what the namespace
        sends, at the namespace's input hook for what it receives. (Dropping locally generated packets at an
        output hook would fail the sender's sendmsg() with EPERM instead of losing them on the way.)"""
        self._delete_table()
        if condition is None:
            return
        for veth, inside in ((self.host_veth, False), (self.inner_veth, True)):
            script = self.workdir / f"{self.table}-{veth}.nft"
            script.write_text(
                f"table inet {self.table} {{\n"
                f"  chain input {{\n"
                f"    type filter hook input priority 0; policy accept;\n"
                f"    iifname {veth} meta l4proto udp {condition} drop\n"
                f"  }}\n"
                f"}}\n"
            )
            if inside:
                self.inside("nft", "-f", str(script))
            else:
                run("nft", "-f", str(script))

    def clear(self) -> None:
        """The link as it was: no queue limit, nothing dropped."""
        self._delete_table()
        run("tc", "qdisc", "del", "dev", self.host_veth, "root", check=False)
        self.inside("tc", "qdisc", "del", "dev", self.inner_veth, "root", check=False)

    def _delete_table(self) -> None:
        run("nft", "delete", "table", "inet", self.table, check=False)
        self.inside("nft", "delete", "table", "inet", self.table, check=False)

    def destroy(self) -> None:
        run("nft", "delete", "table", "inet", self.table, check=False)
        run("tc", "qdisc", "del", "dev", self.host_veth, "root", check=False)
        run("ip", "link", "del", self.host_veth, check=False)  # takes its peer with it
        run("ip", "netns", "del", self.name, check=False)


# --- pages ---


def open_page(browser, base: str, cookie: str, *, init_script: str | None = None):
    context = browser.new_context(locale="es-PE", base_url=base)
    if init_script:
        context.add_init_script(init_script)
    name, value = cookie.split("=", 1)
    context.add_cookies([{"name": name, "value": value, "url": base}])
    page = context.new_page()
    page.set_default_timeout(30_000)
    return page


def launch_chromium(playwright_browser, *, executable: Path | str = CHROMIUM, extra_args: tuple[str, ...] = ()):
    """Another Chromium from the same Playwright as the module's `browser` fixture (another executable or flags).

    A page inside the namespace loads over plain HTTP from a private address, which is not a secure context
    (no getUserMedia there); `--unsafely-treat-insecure-origin-as-secure=<origin>` makes that one origin one."""
    replaced = {arg.split("=", 1)[0] for arg in extra_args}
    args = [arg for arg in CHROMIUM_ARGS if arg.split("=", 1)[0] not in replaced]
    return playwright_browser.browser_type.launch(
        executable_path=str(executable), headless=True, args=[*args, *extra_args]
    )


def wait_until(check, *, timeout: float, message: str, interval: float = 0.5):
    """Polls `check()` until it returns something truthy; fails with `message` and the last value otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message}: {value!r}")
        time.sleep(interval)


def frames(page) -> int:
    stats = page.evaluate(STATS)
    return sum(peer["framesDecoded"] for peer in stats["peers"])


def wait_for_frames(page, *, above: int, timeout: float = 40, side: str = "") -> int:
    """Until the page's remote video decodes more than `above` frames (on a connected connection)."""

    def check():
        stats = page.evaluate(STATS)
        connected = [peer for peer in stats["peers"] if peer["connection"] == "connected"]
        total = sum(peer["framesDecoded"] for peer in connected)
        return total if total > above else None

    return wait_until(check, timeout=timeout, message=f"{side} decodes no new frames beyond {above}")


def admit(patient, practitioner, public_id: str) -> None:
    """The patient waits in the lobby, the practitioner opens the room and admits them."""
    patient.goto(f"/visit/{public_id}/waiting/")
    patient.get_by_text("Esperando a que el profesional lo admita.").wait_for()
    practitioner.goto(f"/visit/{public_id}/room/")
    practitioner.get_by_text("Paciente en la sala de espera").wait_for()
    practitioner.get_by_role("button", name="Admitir", exact=True).click()
    patient.locator("[data-call-stage]").wait_for(state="visible")
