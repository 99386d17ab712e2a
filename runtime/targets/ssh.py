"""`ssh://user@host[:port][?python=PATH&identity=KEY&known_hosts=FILE]`: a real device over OpenSSH.

Every step runs the system's `ssh` with an argument list (no local shell); the one string the remote shell sees is
built from `shlex.quote`d words, and user, host and paths are checked against strict patterns before anything runs.
Host keys are checked (`StrictHostKeyChecking=yes`, `BatchMode=yes`: an unknown or changed key fails, nothing is
asked), every step has a timeout, and the work directory is removed on the way out, on failure too.

With `python=PATH` the device's interpreter (which has numpy, pydantic, onnxruntime or ai-edge-litert, tokenizers)
imports edgekd from the pushed wheel; without it, a venv is made on the device and `edgekd[runtime]` installed into it
from the wheel (the device needs a package index then).
"""

from __future__ import annotations

import io
import logging
import re
import shlex
import subprocess
import tarfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from edgekd.errors import ConfigError

from . import Target, TargetError

logger = logging.getLogger(__name__)

_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_PATH = re.compile(r"^/[A-Za-z0-9_./+-]+$")
_WORKDIR = re.compile(r"^/tmp/edgekd\.[A-Za-z0-9]{10}$")
STEP_TIMEOUT = 60.0
INSTALL_TIMEOUT = 900.0


class SshTarget(Target):
    latency_source = "measured_device"

    def __init__(self, user: str, host: str, port: int = 22, *, python: str | None = None, identity: str | None = None,
                 known_hosts: str | None = None) -> None:
        problems = []
        if not _USER.match(user):
            problems.append(f"user {user!r}: letters, digits, _ . - only")
        if not _HOST.match(host):
            problems.append(f"host {host!r}: a host name or IPv4 address (letters, digits, . -)")
        if not 0 < port < 65536:
            problems.append(f"port {port}: 1 to 65535")
        for key, value in (("python", python), ("identity", identity), ("known_hosts", known_hosts)):
            if value is not None and not _PATH.match(value):
                problems.append(f"{key} {value!r}: an absolute path of letters, digits, _ . / + -")
        if problems:
            raise ConfigError("ssh target: " + "; ".join(problems))
        self.user, self.host, self.port = user, host, port
        self.python, self.identity, self.known_hosts = python, identity, known_hosts
        self.name = f"ssh://{user}@{host}:{port}"
        self.workdir: str | None = None
        self._runner: list[str] | None = None

    @classmethod
    def from_url(cls, url: str) -> SshTarget:
        parts = urlsplit(url)
        try:
            port = parts.port or 22
        except ValueError:
            raise ConfigError(f"ssh target {url!r}: the port is not a number from 1 to 65535") from None
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = sorted(set(query) - {"python", "identity", "known_hosts"})
        if unknown or not parts.username or not parts.hostname or parts.path not in ("", "/"):
            raise ConfigError(
                f"ssh target {url!r}: write ssh://user@host[:port][?python=PATH&identity=KEY&known_hosts=FILE]"
                + (f" (unknown options: {', '.join(unknown)})" if unknown else "")
            )
        return cls(parts.username, parts.hostname, port, python=query.get("python"), identity=query.get("identity"),
                   known_hosts=query.get("known_hosts"))

    # ---- the four steps ---------------------------------------------------------------------------------------

    def push(self, local: Path) -> str:
        workdir = self._workdir()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            archive.add(local, arcname=local.name)
        self._ssh(["tar", "-C", workdir, "-xf", "-"], STEP_TIMEOUT, stdin=buffer.getvalue())
        return f"{workdir}/{local.name}"

    def run(self, args: list[str], timeout: float) -> str:
        return self._ssh([*self._child(), *args], timeout).decode("utf-8", "replace")

    def fetch(self, remote: str, local: Path) -> None:
        local.write_bytes(self._ssh(["cat", "--", remote], STEP_TIMEOUT))

    def cleanup(self) -> None:
        if self.workdir is None:
            return
        workdir, self.workdir = self.workdir, None
        try:
            self._ssh(["rm", "-rf", "--", workdir], 30.0)
        except TargetError as exc:
            logger.warning("%s: could not remove %s: %s", self.name, workdir, exc)

    # ---- helpers ----------------------------------------------------------------------------------------------

    def _base(self) -> list[str]:
        command = [
            "ssh", "-p", str(self.port),
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR",
        ]
        if self.known_hosts:
            command += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.identity:
            command += ["-i", self.identity, "-o", "IdentitiesOnly=yes"]
        return [*command, f"{self.user}@{self.host}"]

    def _ssh(self, words: list[str], timeout: float, stdin: bytes | None = None) -> bytes:
        """Run words on the device, each quoted for its shell; its stdout, or a TargetError."""
        remote = " ".join(shlex.quote(w) for w in words)
        try:
            done = subprocess.run([*self._base(), "--", remote], input=stdin, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise TargetError(f"{self.name}: `{words[0]}` did not finish within {timeout:.0f} s; the device may hang") from None
        if done.returncode != 0:
            detail = done.stderr.decode("utf-8", "replace").strip()[-800:]
            hint = " (the host key is unknown or changed: add the device's key to known_hosts)" if "host key" in detail.lower() else ""
            raise TargetError(f"{self.name}: `{words[0]}` failed (exit {done.returncode}){hint}: {detail}")
        return done.stdout

    def _workdir(self) -> str:
        if self.workdir is None:
            made = self._ssh(["mktemp", "-d", "/tmp/edgekd.XXXXXXXXXX"], STEP_TIMEOUT).decode().strip()
            if not _WORKDIR.match(made):
                raise TargetError(f"{self.name}: mktemp gave {made!r}, not a work directory edgekd made")
            self.workdir = made
        return self.workdir

    def _child(self) -> list[str]:
        """The command words that start the child on the device (pushing edgekd first time)."""
        if self._runner is None:
            from .package import runtime_archive

            archive = self.push(runtime_archive())
            if self.python:
                self._runner = ["env", f"PYTHONPATH={archive}", self.python, "-m", "edgekd.runtime.child"]
            else:
                venv = f"{self._workdir()}/venv"
                self._ssh(["python3", "-m", "venv", venv], STEP_TIMEOUT)
                self._ssh([f"{venv}/bin/python", "-m", "pip", "install", "-q", f"{archive}[runtime]"], INSTALL_TIMEOUT)
                self._runner = [f"{venv}/bin/python", "-m", "edgekd.runtime.child"]
        return self._runner
