"""Why debugfs/page_owner cannot be read: one error class per cause, each with a hint.

The causes are told apart from what the machine shows: the errno of the open, whether
debugfs is mounted (an unmounted /sys/kernel/debug is an empty directory), the kernel
config (/boot/config-RELEASE or /proc/config.gz) and the command line (/proc/cmdline).
"""

from __future__ import annotations

import errno
import os

from pageowner.dump.era import version_from_release
from pageowner.errors import CaptureError
from pageowner.kernel.kernels import DEFAULT_VERSION, KernelVersion, version_key
from pageowner.live.host import Host, cmdline_enables_page_owner, config_page_owner

__all__ = [
    "DebugfsNotMountedError",
    "HintedCaptureError",
    "NotRootError",
    "PageOwnerDisabledError",
    "PageOwnerNotBuiltError",
    "PartialReadError",
    "PermissionDeniedError",
    "FilterRefusedError",
    "diagnose_filter_error",
    "diagnose_missing",
    "diagnose_open_error",
]


class HintedCaptureError(CaptureError):
    """A capture failure printed as its message and, on the next line, what to do."""

    def __init__(self, message: str, hint: str) -> None:
        self.message = message
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        """Render the message, then `hint: ...` on its own line."""
        return f"{self.message}\nhint: {self.hint}"


class NotRootError(HintedCaptureError):
    """page_owner (mode 0400) or debugfs (mode 0700) refused a user other than root."""


class PermissionDeniedError(HintedCaptureError):
    """Root was refused: kernel lockdown or a security module guards debugfs."""


class DebugfsNotMountedError(HintedCaptureError):
    """debugfs is not mounted where page_owner was looked for."""


class PageOwnerDisabledError(HintedCaptureError):
    """The kernel has page_owner but was booted without `page_owner=on`."""


class PageOwnerNotBuiltError(HintedCaptureError):
    """The kernel was built without CONFIG_PAGE_OWNER."""


class FilterRefusedError(HintedCaptureError):
    """The kernel refused the 7.3 filter written to page_owner (or has no filters)."""


class PartialReadError(HintedCaptureError):
    """Reading stopped or lost records partway; what was read is kept."""

    def __init__(self, message: str, hint: str, *, bytes_read: int, records: int) -> None:
        self.bytes_read = bytes_read
        self.records = records
        super().__init__(message, hint)


def _mount_hint(debugfs: str) -> str:
    """Say how to mount debugfs at the path looked at."""
    return f"mount it with: sudo mount -t debugfs none {debugfs}"


def diagnose_open_error(host: Host, path: str, exc: OSError) -> CaptureError:
    """Turn the failure to open a debugfs file into the error that names its cause."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return _permission_error(host, path, exc)
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return diagnose_missing(host, path)
    return CaptureError(f"cannot open {path}: {exc.strerror or exc}")


def _permission_error(host: Host, path: str, exc: OSError) -> CaptureError:
    """Tell a user who is not root from root stopped by lockdown."""
    euid = host.geteuid()
    release = host.release()
    kernel = KernelVersion(version_from_release(release) or DEFAULT_VERSION)
    if euid != 0:
        return NotRootError(
            f"cannot read {path}: permission denied (running as uid {euid}, not root)",
            "page_owner is readable by root only (debugfs is mode 0700, page_owner "
            f"{kernel.page_owner_mode:04o}): run the command with sudo",
        )
    if kernel.page_owner_mode & 0o200 and exc.errno == errno.EPERM:
        # 7.3 creates page_owner 0600 (it takes filter writes); debugfs_locked_down()
        # refuses any file with a write bit under LOCKDOWN_DEBUGFS, even for reading.
        return PermissionDeniedError(
            f"cannot read {path} even as root: {exc.strerror or exc}",
            f"kernel {release} makes page_owner writable (mode 0600), and a locked-down "
            "kernel refuses writable debugfs files (EPERM) even to root; check "
            "/sys/kernel/security/lockdown and boot with lockdown=none (Secure Boot "
            "turns lockdown on) to read page_owner",
        )
    return PermissionDeniedError(
        f"cannot read {path} even as root: {exc.strerror or exc}",
        "kernel lockdown or a security module (SELinux, AppArmor) restricts debugfs; "
        "check /sys/kernel/security/lockdown and the audit log",
    )


def diagnose_missing(host: Host, path: str) -> CaptureError:
    """Tell why a page_owner file does not exist: debugfs, the boot option or the build."""
    debugfs = host.paths.debugfs
    try:
        entries = os.listdir(debugfs)
    except (FileNotFoundError, NotADirectoryError):
        return DebugfsNotMountedError(
            f"cannot read {path}: {debugfs} does not exist, so debugfs is not mounted there",
            _mount_hint(debugfs),
        )
    except PermissionError as exc:
        return _permission_error(host, debugfs, exc)
    if not entries:
        return DebugfsNotMountedError(
            f"cannot read {path}: debugfs is not mounted ({debugfs} is empty)",
            _mount_hint(debugfs),
        )
    release = host.release()
    config = host.kernel_config()
    built = config_page_owner(config[1]) if config is not None else None
    if config is not None and not built:
        return PageOwnerNotBuiltError(
            f"cannot read {path}: kernel {release} was built without page_owner "
            f"({config[0]} does not set CONFIG_PAGE_OWNER=y)",
            "use a kernel built with CONFIG_PAGE_OWNER=y (most distribution kernels leave "
            "it out) and boot it with page_owner=on",
        )
    cmdline = host.cmdline()
    checked = (
        f"{config[0]} has CONFIG_PAGE_OWNER=y"
        if config is not None
        else f"could not read {' or '.join(host.config_paths())} to check CONFIG_PAGE_OWNER"
    )
    if cmdline is None or not cmdline_enables_page_owner(cmdline, release):
        seen = (
            f"{host.paths.cmdline} lacks page_owner=on"
            if cmdline is not None
            else f"{host.paths.cmdline} could not be read"
        )
        return PageOwnerDisabledError(
            f"cannot read {path}: page_owner is not enabled ({seen}; {checked})",
            "boot with page_owner=on on the kernel command line (for GRUB: add it to "
            "GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub, reboot)",
        )
    if config is None:
        # page_owner=on is set yet the initcall made no file: an unknown parameter is
        # ignored by a kernel without CONFIG_PAGE_OWNER, which is by far the likeliest cause.
        return PageOwnerNotBuiltError(
            f"cannot read {path}: page_owner=on is on the command line but the file does "
            f"not exist, so kernel {release} was most likely built without CONFIG_PAGE_OWNER "
            f"({checked})",
            "use a kernel built with CONFIG_PAGE_OWNER=y; `dmesg | grep page_owner` shows "
            "'page_owner is disabled' when it is built in but off",
        )
    return HintedCaptureError(
        f"cannot read {path}: the file does not exist although page_owner=on is set and "
        f"{checked}",
        f"look for page_owner lines in dmesg; is {debugfs} this kernel's debugfs?",
    )


def _before_7_3(release: str) -> bool:
    """Tell whether a kernel release is older than 7.3 (no page_owner writes).

    >>> _before_7_3("6.12.117-amd64"), _before_7_3("7.3.0-rc7")
    (True, False)
    """
    version = version_from_release(release)
    return version is not None and version_key(version) < version_key("7.3")


def diagnose_filter_error(host: Host, path: str, command: str, exc: OSError) -> CaptureError:
    """Turn a failed filter write into the error that names its cause (kernel-7.3.md 1, 6)."""
    release = host.release()
    written = f"writing {command!r} to {path} failed: {exc.strerror or exc}"
    if exc.errno == errno.EINVAL and _before_7_3(release):
        return FilterRefusedError(
            f"{written}: kernel {release} takes no page_owner filters (7.3 added them)",
            "capture without --mode and --nid: older kernels print every node in stack mode",
        )
    if exc.errno == errno.EINVAL:
        return FilterRefusedError(
            f"{written} (the kernel rejected the whole filter)",
            "--nid must list nodes that have memory (see /sys/devices/system/node/"
            "has_memory), as 0, 0,2 or 0-3; --mode is stack, handle or stack_handle",
        )
    if exc.errno == errno.ERANGE:
        return FilterRefusedError(
            f"{written}: a node number is not below MAX_NUMNODES",
            "node numbers go from 0 to 63 on x86_64 (NODES_SHIFT 6); list the nodes that "
            "/sys/devices/system/node/has_memory names",
        )
    if exc.errno == errno.EBADF:
        return FilterRefusedError(
            f"{written}: the descriptor is not open for writing",
            "page_owner must be opened read-write to take a filter; this is a pageowner bug",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return _permission_error(host, path, exc)
    return CaptureError(written)
