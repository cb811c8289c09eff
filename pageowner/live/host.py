"""Where a live machine's files are, and the few facts about it that a capture records.

`HostPaths` names debugfs, /proc and /boot; tests point them at a fake tree. `Host` adds
the facts that come from system calls (euid, hostname, page size) as replaceable values.
"""

from __future__ import annotations

import gzip
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from pageowner.dump.era import version_from_release
from pageowner.kernel.kernels import DEFAULT_VERSION, KernelVersion
from pageowner.kernel.kstrtox import page_owner_setting

__all__ = [
    "DEFAULT_DEBUGFS",
    "STACKS_FILES",
    "Host",
    "HostPaths",
    "cmdline_enables_page_owner",
    "config_page_owner",
    "parse_count_threshold",
    "parse_uptime",
]

DEFAULT_DEBUGFS = "/sys/kernel/debug"

# The files of page_owner_stacks/ in the order a capture takes them (v6.9; handles v6.19).
STACKS_FILES: tuple[str, ...] = (
    "show_stacks",
    "show_handles",
    "show_stacks_handles",
    "count_threshold",
)



@dataclass(frozen=True)
class HostPaths:
    """The directories a live capture reads: debugfs, procfs and /boot."""

    debugfs: str = DEFAULT_DEBUGFS
    proc: str = "/proc"
    boot: str = "/boot"

    @property
    def page_owner(self) -> str:
        """Return the path of the page_owner dump file."""
        return os.path.join(self.debugfs, "page_owner")

    @property
    def stacks_dir(self) -> str:
        """Return the path of the page_owner_stacks directory (v6.9+)."""
        return os.path.join(self.debugfs, "page_owner_stacks")

    def stacks_file(self, name: str) -> str:
        """Return the path of one page_owner_stacks file."""
        return os.path.join(self.stacks_dir, name)

    @property
    def cmdline(self) -> str:
        """Return the path of the kernel command line."""
        return os.path.join(self.proc, "cmdline")

    @property
    def uptime(self) -> str:
        """Return the path of /proc/uptime."""
        return os.path.join(self.proc, "uptime")

    @property
    def boot_id(self) -> str:
        """Return the path of /proc/sys/kernel/random/boot_id."""
        return os.path.join(self.proc, "sys", "kernel", "random", "boot_id")

    @property
    def hostname(self) -> str:
        """Return the path of /proc/sys/kernel/hostname."""
        return os.path.join(self.proc, "sys", "kernel", "hostname")

    @property
    def osrelease(self) -> str:
        """Return the path of the running kernel's release string."""
        return os.path.join(self.proc, "sys", "kernel", "osrelease")

    @property
    def config_gz(self) -> str:
        """Return the path of the in-kernel config (CONFIG_IKCONFIG_PROC)."""
        return os.path.join(self.proc, "config.gz")

    def boot_config(self, release: str) -> str:
        """Return the path of the config a distribution installs beside the kernel."""
        return os.path.join(self.boot, f"config-{release}")


def _read_text(path: str) -> str | None:
    """Return a small text file's content, or None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read(1 << 16).decode("utf-8", "replace")
    except OSError:
        return None


@dataclass(frozen=True)
class Host:
    """A machine to capture from: its paths plus replaceable system facts."""

    paths: HostPaths = field(default_factory=HostPaths)
    geteuid: Callable[[], int] = os.geteuid
    gethostname: Callable[[], str] = socket.gethostname
    page_size: Callable[[], int] = lambda: os.sysconf("SC_PAGE_SIZE")
    uname_release: Callable[[], str] = lambda: os.uname().release

    def release(self) -> str:
        """Return the kernel release, from procfs first (so a fake tree can set it)."""
        text = _read_text(self.paths.osrelease)
        if text is not None and text.strip():
            return text.strip()
        return self.uname_release()

    def hostname(self) -> str:
        """Return the host name, from procfs first (so a fake or simulated tree can set it)."""
        text = _read_text(self.paths.hostname)
        if text is not None and text.strip():
            return text.strip()
        return self.gethostname()

    def cmdline(self) -> str | None:
        """Return the kernel command line, or None when procfs cannot be read."""
        text = _read_text(self.paths.cmdline)
        return None if text is None else text.strip("\x00\n ")

    def uptime(self) -> float | None:
        """Return seconds since boot from /proc/uptime, or None when it cannot be read."""
        return parse_uptime(_read_text(self.paths.uptime) or "")

    def boot_id(self) -> str | None:
        """Return the random id the kernel draws at each boot, or None when unreadable."""
        text = _read_text(self.paths.boot_id)
        if text is None or not text.strip():
            return None
        return text.strip()

    def kernel_config(self) -> tuple[str, str] | None:
        """Return (path, text) of the first readable kernel config, or None."""
        candidate = self.paths.boot_config(self.release())
        text = _read_text_any(candidate)
        if text is not None:
            return candidate, text
        text = _read_text_any(self.paths.config_gz)
        if text is not None:
            return self.paths.config_gz, text
        return None

    def config_paths(self) -> tuple[str, str]:
        """Return the config files `kernel_config` looks at, in order."""
        return self.paths.boot_config(self.release()), self.paths.config_gz


def _read_text_any(path: str) -> str | None:
    """Read a config file, gunzipping it when it is compressed."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        if data.startswith(b"\x1f\x8b"):
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    return data.decode("utf-8", "replace")


def parse_uptime(text: str) -> float | None:
    """Return the first field of /proc/uptime (seconds since boot), or None if it is not one.

    >>> parse_uptime("350735.47 234388.90\\n")
    350735.47
    """
    fields = text.split()
    try:
        seconds = float(fields[0]) if fields else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < float("inf") else None


def parse_count_threshold(text: str) -> int | None:
    """Read page_owner_stacks/count_threshold: `N` on 6.9-6.19 ("%llu"), `N\\n` on 7.3.

    >>> parse_count_threshold("64"), parse_count_threshold("64\\n"), parse_count_threshold("x")
    (64, 64, None)
    """
    body = text[:-1] if text.endswith("\n") else text
    return int(body) if body.isascii() and body.isdigit() else None


def cmdline_enables_page_owner(cmdline: str, release: str | None = None) -> bool:
    """Tell whether a kernel command line turns page_owner on, read as `release` reads it.

    Each `page_owner=` is applied in turn (kernel.kstrtox.page_owner_setting): before 5.14
    only `on` switches it, and only on; from 5.14 kstrtobool() decides and an invalid
    value keeps the previous setting. An unknown release is read as the newest kernel.

    >>> cmdline_enables_page_owner("quiet page_owner=on")
    True
    >>> cmdline_enables_page_owner("page_owner=on page_owner=off")
    False
    >>> cmdline_enables_page_owner("page_owner=on page_owner=off", "5.10.223")
    True
    """
    version = version_from_release(release) if release else None
    kernel = KernelVersion(version or DEFAULT_VERSION)
    enabled = False
    for word in cmdline.split():
        key, sep, value = word.partition("=")
        if key == "page_owner" and sep:
            enabled = page_owner_setting(value, enabled, kernel)
    return enabled


def config_page_owner(config: str) -> bool | None:
    """Tell what a kernel .config says of CONFIG_PAGE_OWNER: True, False, or None if silent.

    >>> config_page_owner("CONFIG_PAGE_OWNER=y\\n")
    True
    >>> config_page_owner("# CONFIG_PAGE_OWNER is not set\\n")
    False
    """
    for line in config.splitlines():
        if line.startswith("CONFIG_PAGE_OWNER="):
            return line.split("=", 1)[1].strip() == "y"
        if line.strip() == "# CONFIG_PAGE_OWNER is not set":
            return False
    return None
