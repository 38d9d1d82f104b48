"""Faults at start-up: a read-only or full data directory (and certificate directory) makes
``ruang serve`` exit 1 with one clear line, never a traceback.

As root, ``chmod`` does not make a directory read-only, so each case runs the server inside a
private mount namespace (``unshare -m``) on a tmpfs the test mounts read-only, or fills up.
Nothing outside that namespace sees the mount.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import PASSWORD, ROOT

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare (private mount namespaces); run via scripts/run-tests.sh",
)

SERVE = f"{shlex.quote(sys.executable)} -m server serve"
ADD = (
    f"printf '%s\\n' {shlex.quote(PASSWORD)} | {shlex.quote(sys.executable)} -m server "
    "counselor add ana@example.org --password-stdin >/dev/null"
)
FILL = "{ dd if=/dev/zero of=$M/fill bs=4k 2>/dev/null || true; }"

# name -> (shell steps before serving, with $M the tmpfs; the one error line, a regex after
# {data} and {certs} are filled in)
CASES: dict[str, tuple[str, str]] = {
    "read-only, empty": (
        "mount -t tmpfs -o ro,size=4m tmpfs $M",
        "the data directory {data} is not writable: Read-only file system",
    ),
    "read-only, with existing data": (
        f"mount -t tmpfs -o size=4m tmpfs $M && {ADD} && mount -o remount,ro $M",
        "the data directory {data} is not writable: Read-only file system",
    ),
    "full, nothing left": (
        f"mount -t tmpfs -o size=1m tmpfs $M && mkdir $M/data && {FILL}",
        "the data directory {data} is not writable: No space left on device",
    ),
    "full, with existing data": (
        f"mount -t tmpfs -o size=1m tmpfs $M && {ADD} && {FILL}",
        "the data directory {data} is not writable: No space left on device",
    ),
    "nearly full: room for a probe, not for a database": (
        f"mount -t tmpfs -o size=1m tmpfs $M && {FILL} && truncate -s -16K $M/fill",
        r"the data directory {data} is nearly full: \d+ KiB free, at least 1 MiB needed",
    ),
    "full, where the development certificate goes": (
        f"mount -t tmpfs -o size=1m tmpfs $M && {FILL}",
        "cannot write the development certificate in {certs}: No space left on device",
    ),
}


@needs_root
@pytest.mark.parametrize("case", list(CASES))
def test_unwritable_data_dir_at_start_is_one_clear_line(
    case: str, tmp_path: Path, dev_cert: tuple[Path, Path]
) -> None:
    steps, expected = CASES[case]
    mount = tmp_path / "m"
    mount.mkdir()
    data, certs = mount / "data", mount / "certs"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RUANG_")},
        "M": str(mount),
        "RUANG_DATA_DIR": str(data),
        "RUANG_CERT_DIR": str(certs),
        "RUANG_HOST": "127.0.0.1",
        "RUANG_PORT": "0",
    }
    if "certificate" not in case:
        env["RUANG_TLS_CERT"], env["RUANG_TLS_KEY"] = str(dev_cert[0]), str(dev_cert[1])
    script = f"set -e; {steps}; exec {SERVE}"
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ruang: ")]
    assert len(errors) == 1, result.stderr
    wanted = expected.format(data=re.escape(str(data)), certs=re.escape(str(certs)))
    assert re.fullmatch("ruang: " + wanted, errors[0]), result.stderr
    # Only the mount namespace saw the tmpfs: the test's own directory is untouched.
    assert list(mount.iterdir()) == []
