"""A throw-away OpenSSH server on a loopback port, for the ssh target's tests (needs root and Debian's sshd)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


@dataclass(frozen=True)
class Server:
    port: int
    identity: Path
    known_hosts: Path
    user: str

    def url(self, **query: str) -> str:
        options = {"identity": str(self.identity), "known_hosts": str(self.known_hosts), **query}
        return f"ssh://{self.user}@127.0.0.1:{self.port}?" + "&".join(f"{k}={v}" for k, v in options.items())


def unavailable() -> str | None:
    """Why the server cannot start here, or None."""
    if not SSHD.is_file() or shutil.which("ssh") is None:
        return "OpenSSH is not installed (apt-get install openssh-server; .ci/run does)"
    if os.geteuid() != 0:
        return "sshd needs root to accept logins"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serve(root: Path) -> Iterator[Server]:
    root.mkdir(parents=True, exist_ok=True)
    host_key, client_key = root / "host_ed25519", root / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    (root / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        f"PidFile {root / 'sshd.pid'}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=open(root / "sshd.log", "w"))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"sshd did not start: {(root / 'sshd.log').read_text()[-500:]}") from None
                time.sleep(0.1)
        known_hosts = root / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} " + host_key.with_suffix(".pub").read_text())
        yield Server(port=port, identity=client_key, known_hosts=known_hosts, user="root")
    finally:
        process.terminate()
        process.wait(timeout=10)
