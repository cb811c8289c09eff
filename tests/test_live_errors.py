"""Each way a live capture can fail has its own error, message and hint."""

from __future__ import annotations

import errno
import gzip
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pageowner.cli import cli
from pageowner.errors import CaptureError
from pageowner.live.capture import capture
from pageowner.live.diagnose import (
    DebugfsNotMountedError,
    NotRootError,
    PageOwnerDisabledError,
    PageOwnerNotBuiltError,
    PermissionDeniedError,
)
from pageowner.live.host import cmdline_enables_page_owner, config_page_owner
from pageowner.live.watch import watch
from tests.live_trees import FakeMachine

MOUNT_HINT = "hint: mount it with: sudo mount -t debugfs none {debugfs}"
BOOT_HINT = (
    "hint: boot with page_owner=on on the kernel command line (for GRUB: add it to "
    "GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub, reboot)"
)
BUILD_HINT = (
    "hint: use a kernel built with CONFIG_PAGE_OWNER=y (most distribution kernels leave "
    "it out) and boot it with page_owner=on"
)


def _denied(code: int) -> Callable[[str], object]:
    """Return an opener failing like open() on a file the caller may not read."""

    def opener(path: str) -> object:
        raise OSError(code, os.strerror(code))

    return opener


def _capture_error(machine: FakeMachine, tmp_path: Path, **kwargs: object) -> CaptureError:
    """Run a capture expected to fail and return its error."""
    with pytest.raises(CaptureError) as caught:
        capture(str(tmp_path / "d.txt"), host=machine.host, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "d.txt").exists()
    return caught.value


def test_not_root(tmp_path: Path) -> None:
    # GIVEN a user (uid 1000) whom page_owner's mode 0400 refuses
    machine = FakeMachine(tmp_path / "host", euid=1000)
    machine.write("page_owner", b"")
    # WHEN a capture is tried
    error = _capture_error(machine, tmp_path, opener=_denied(errno.EACCES))
    # THEN the error says why and to use sudo
    assert isinstance(error, NotRootError)
    assert str(error) == (
        f"cannot read {machine.debugfs}/page_owner: permission denied (running as uid 1000, "
        "not root)\nhint: page_owner is readable by root only (debugfs is mode 0700, "
        "page_owner 0400): run the command with sudo"
    )


def test_root_refused_points_at_lockdown(tmp_path: Path) -> None:
    # GIVEN root refused by the kernel (lockdown answers EPERM)
    machine = FakeMachine(tmp_path / "host", euid=0)
    machine.write("page_owner", b"")
    # WHEN a capture is tried
    error = _capture_error(machine, tmp_path, opener=_denied(errno.EPERM))
    # THEN sudo is not the advice; lockdown is
    assert isinstance(error, PermissionDeniedError)
    assert str(error) == (
        f"cannot read {machine.debugfs}/page_owner even as root: Operation not permitted\n"
        "hint: kernel lockdown or a security module (SELinux, AppArmor) restricts debugfs; "
        "check /sys/kernel/security/lockdown and the audit log"
    )


def test_not_root_on_7_3_names_mode_0600(tmp_path: Path) -> None:
    # GIVEN a 7.3 kernel, which creates page_owner 0600 (it takes filter writes)
    machine = FakeMachine(tmp_path / "host", euid=1000, release="7.3.0-rc7")
    machine.write("page_owner", b"")
    # WHEN a user who is not root tries THEN the hint gives 7.3's mode
    error = _capture_error(machine, tmp_path, opener=_denied(errno.EACCES))
    assert isinstance(error, NotRootError)
    assert "page_owner 0600): run the command with sudo" in str(error)


def test_root_refused_on_7_3_explains_the_writable_file(tmp_path: Path) -> None:
    # GIVEN root on a locked-down 7.3 kernel: debugfs refuses a file with a write bit (EPERM)
    machine = FakeMachine(tmp_path / "host", euid=0, release="7.3.0-rc7")
    machine.write("page_owner", b"")
    # WHEN a capture is tried
    error = _capture_error(machine, tmp_path, opener=_denied(errno.EPERM))
    # THEN the hint says why a root read fails there and what lifts it
    assert isinstance(error, PermissionDeniedError)
    assert str(error) == (
        f"cannot read {machine.debugfs}/page_owner even as root: Operation not permitted\n"
        "hint: kernel 7.3.0-rc7 makes page_owner writable (mode 0600), and a locked-down "
        "kernel refuses writable debugfs files (EPERM) even to root; check "
        "/sys/kernel/security/lockdown and boot with lockdown=none (Secure Boot turns "
        "lockdown on) to read page_owner"
    )


def test_debugfs_not_mounted(tmp_path: Path) -> None:
    # GIVEN an empty mount point, as /sys/kernel/debug is before `mount -t debugfs`
    machine = FakeMachine(tmp_path / "host")
    # WHEN a capture is tried
    error = _capture_error(machine, tmp_path)
    # THEN the error gives the mount command for that directory
    assert isinstance(error, DebugfsNotMountedError)
    assert str(error) == (
        f"cannot read {machine.debugfs}/page_owner: debugfs is not mounted "
        f"({machine.debugfs} is empty)\n" + MOUNT_HINT.format(debugfs=machine.debugfs)
    )


def test_debugfs_directory_missing(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path / "host")
    machine.debugfs.rmdir()
    error = _capture_error(machine, tmp_path)
    assert isinstance(error, DebugfsNotMountedError)
    assert str(error) == (
        f"cannot read {machine.debugfs}/page_owner: {machine.debugfs} does not exist, so "
        "debugfs is not mounted there\n" + MOUNT_HINT.format(debugfs=machine.debugfs)
    )


def test_built_in_but_not_enabled(tmp_path: Path) -> None:
    # GIVEN a kernel configured with page_owner, booted without page_owner=on
    machine = FakeMachine(tmp_path / "host")
    machine.mount_debugfs()
    machine.set_config("CONFIG_DEBUG_FS=y\nCONFIG_PAGE_OWNER=y\n")
    machine.set_cmdline("BOOT_IMAGE=/vmlinuz root=/dev/vda1 quiet")
    # WHEN a capture is tried
    error = _capture_error(machine, tmp_path)
    # THEN the user is told to boot with page_owner=on, and what was checked
    assert isinstance(error, PageOwnerDisabledError)
    config = machine.root / "boot/config-6.12.117"
    assert str(error) == (
        f"cannot read {machine.debugfs}/page_owner: page_owner is not enabled "
        f"({machine.root}/proc/cmdline lacks page_owner=on; {config} has "
        "CONFIG_PAGE_OWNER=y)\n" + BOOT_HINT
    )


def test_not_enabled_when_the_config_cannot_be_read(tmp_path: Path) -> None:
    # GIVEN no readable config, and page_owner=off on the command line
    machine = FakeMachine(tmp_path / "host")
    machine.mount_debugfs()
    machine.set_cmdline("quiet page_owner=off")
    # WHEN a capture is tried
    error = _capture_error(machine, tmp_path)
    # THEN the boot option is the advice, and the error says the config was not checked
    assert isinstance(error, PageOwnerDisabledError)
    assert str(error) == (
        f"cannot read {machine.debugfs}/page_owner: page_owner is not enabled "
        f"({machine.root}/proc/cmdline lacks page_owner=on; could not read "
        f"{machine.root}/boot/config-6.12.117 or {machine.root}/proc/config.gz to check "
        "CONFIG_PAGE_OWNER)\n" + BOOT_HINT
    )


def test_not_built_per_boot_config(tmp_path: Path) -> None:
    # GIVEN a distribution kernel whose /boot config leaves page_owner out
    machine = FakeMachine(tmp_path / "host")
    machine.mount_debugfs()
    machine.set_config("CONFIG_DEBUG_FS=y\n# CONFIG_PAGE_OWNER is not set\n")
    # WHEN a capture is tried (even with page_owner=on on the command line)
    error = _capture_error(machine, tmp_path)
    # THEN the error names the config file that says so
    assert isinstance(error, PageOwnerNotBuiltError)
    assert str(error) == (
        f"cannot read {machine.debugfs}/page_owner: kernel 6.12.117 was built without "
        f"page_owner ({machine.root}/boot/config-6.12.117 does not set "
        "CONFIG_PAGE_OWNER=y)\n" + BUILD_HINT
    )


def test_not_built_per_proc_config_gz(tmp_path: Path) -> None:
    # GIVEN no /boot config, but an in-kernel config lacking page_owner altogether
    machine = FakeMachine(tmp_path / "host")
    machine.mount_debugfs()
    (machine.root / "proc/config.gz").write_bytes(gzip.compress(b"CONFIG_DEBUG_FS=y\n"))
    # WHEN a capture is tried
    error = _capture_error(machine, tmp_path)
    # THEN /proc/config.gz is named
    assert isinstance(error, PageOwnerNotBuiltError)
    assert str(error) == (
        f"cannot read {machine.debugfs}/page_owner: kernel 6.12.117 was built without "
        f"page_owner ({machine.root}/proc/config.gz does not set CONFIG_PAGE_OWNER=y)\n"
        + BUILD_HINT
    )


def test_not_built_inferred_from_an_ignored_boot_option(tmp_path: Path) -> None:
    # GIVEN page_owner=on on the command line, no page_owner file, and no readable config
    machine = FakeMachine(tmp_path / "host")
    machine.mount_debugfs()
    # WHEN a capture is tried
    error = _capture_error(machine, tmp_path)
    # THEN the likeliest cause is given, with what could not be checked
    assert isinstance(error, PageOwnerNotBuiltError)
    assert str(error) == (
        f"cannot read {machine.debugfs}/page_owner: page_owner=on is on the command line "
        "but the file does not exist, so kernel 6.12.117 was most likely built without "
        f"CONFIG_PAGE_OWNER (could not read {machine.root}/boot/config-6.12.117 or "
        f"{machine.root}/proc/config.gz to check CONFIG_PAGE_OWNER)\n"
        "hint: use a kernel built with CONFIG_PAGE_OWNER=y; `dmesg | grep page_owner` shows "
        "'page_owner is disabled' when it is built in but off"
    )


def test_watch_reports_the_same_causes(tmp_path: Path) -> None:
    # GIVEN debugfs not mounted
    machine = FakeMachine(tmp_path / "host")
    # WHEN a watch is started
    with pytest.raises(DebugfsNotMountedError):
        watch(str(tmp_path / "s.db"), host=machine.host, count=1)
    # THEN no store is left behind
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda m: None, "debugfs is not mounted"),
        (lambda m: (m.mount_debugfs(), m.set_config("CONFIG_PAGE_OWNER=y\n"),
                    m.set_cmdline("quiet")), "page_owner is not enabled"),
        (lambda m: (m.mount_debugfs(), m.set_config("# CONFIG_PAGE_OWNER is not set\n")),
         "was built without page_owner"),
    ],
)
def test_cli_prints_message_and_hint_and_exits_1(
    tmp_path: Path, setup: Callable[[FakeMachine], object], expected: str,
) -> None:
    # GIVEN the CLI pointed at a fake machine's debugfs, /proc and /boot
    machine = FakeMachine(tmp_path / "host")
    setup(machine)
    where = ["--debugfs", str(machine.debugfs), "--proc", str(machine.root / "proc"),
             "--boot", str(machine.root / "boot")]
    # WHEN capture and watch run
    for args in (["capture", "-o", str(tmp_path / "d.txt")],
                 ["watch", "--into", str(tmp_path / "s.db"), "--count", "1"]):
        result = CliRunner().invoke(cli, [*args, *where])
        # THEN each prints `pageowner: message`, then a hint line, and exits 1
        assert result.exit_code == 1
        lines = result.stderr.splitlines()
        assert len(lines) == 2
        assert lines[0].startswith("pageowner: cannot read ") and expected in lines[0]
        assert lines[1].startswith("hint: ")


@pytest.mark.parametrize(
    ("cmdline", "enabled"),
    [("page_owner=on", True), ("page_owner=1", True), ("page_owner=y", True),
     ("page_owner=off", False), ("page_owner", False), ("quiet", False),
     ("page_owner=on page_owner=0", False), ("xpage_owner=on", False),
     ("page_owner=on page_owner=maybe", True)],
)
def test_cmdline_enables_page_owner(cmdline: str, enabled: bool) -> None:
    assert cmdline_enables_page_owner(cmdline) is enabled


@pytest.mark.parametrize(
    ("release", "cmdline", "enabled"),
    [("5.10.223", "page_owner=on page_owner=off", True),  # only "on" counts before 5.14
     ("5.10.223", "page_owner=1", False),
     ("6.12.117", "page_owner=enable", False),
     ("7.3.0-rc7", "page_owner=enable", True),  # 7.3's kstrtobool takes e/E, d/D
     ("7.3.0-rc7", "page_owner=on page_owner=d", False),
     ("7.3.0-rc7", "page_owner=on page_owner=x", True)],  # invalid: the setting stays
)  # fmt: skip
def test_cmdline_is_read_as_the_release_reads_it(release: str, cmdline: str,
                                                 enabled: bool) -> None:
    assert cmdline_enables_page_owner(cmdline, release) is enabled


def test_config_page_owner_reads_all_three_answers() -> None:
    assert config_page_owner("A=y\nCONFIG_PAGE_OWNER=y\n") is True
    assert config_page_owner("# CONFIG_PAGE_OWNER is not set\n") is False
    assert config_page_owner("CONFIG_PAGE_OWNER_FOO=y\n") is None
