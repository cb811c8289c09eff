"""Open a kernel crash dump with drgn: VMCOREINFO, the build id check, and clear errors.

drgn (an optional dependency, `pip install pageowner[vmcore]`) does the hard parts: the ELF
or kdump-compressed image, KASLR relocation from VMCOREINFO, page tables, and the DWARF
types. This module only decides whether the pair (vmcore, vmlinux) is usable and says why
not in one line with a hint.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

from pageowner.errors import PageOwnerError

__all__ = [
    "VmcoreError",
    "VmcoreImage",
    "open_vmcore",
    "read_vmcoreinfo",
]

_INSTALL_HINT = "install it with `pip install 'pageowner[vmcore]'` (drgn, from PyPI)"


class VmcoreError(PageOwnerError):
    """A crash dump or its vmlinux cannot be read; the message names the file and a hint."""


@dataclass(frozen=True, slots=True)
class VmcoreImage:
    """An opened crash dump: the drgn program and what VMCOREINFO says of the kernel."""

    prog: Any  # drgn.Program; typed loosely so that mypy does not need drgn installed
    path: str
    vmlinux: str
    vmcoreinfo: dict[str, str]

    @property
    def release(self) -> str:
        """Return the kernel release (OSRELEASE), e.g. '7.3.0-rc7'."""
        return self.vmcoreinfo.get("OSRELEASE", "")

    def prog_fault_error(self) -> type[Exception]:
        """Return drgn's FaultError: a read of memory the dump does not hold."""
        fault: type[Exception] = _import_drgn().FaultError
        return fault

    @property
    def build_id(self) -> str | None:
        """Return the dumped kernel's build id (BUILD-ID of VMCOREINFO), if it has one."""
        return self.vmcoreinfo.get("BUILD-ID")


_NT_ELF64 = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR64 = struct.Struct("<IIQQQQQQ")
_PT_NOTE = 4


def _notes(data: bytes) -> list[tuple[str, int, bytes]]:
    """Split an ELF note segment into (name, type, descriptor) triples."""
    notes = []
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, kind = struct.unpack_from("<III", data, pos)
        pos += 12
        name = data[pos:pos + namesz].rstrip(b"\0").decode("ascii", "replace")
        pos += (namesz + 3) & ~3
        desc = data[pos:pos + descsz]
        pos += (descsz + 3) & ~3
        notes.append((name, kind, desc))
    return notes


def read_vmcoreinfo(path: str) -> dict[str, str] | None:
    """Return the VMCOREINFO note of an ELF vmcore as a dict, or None if it has none.

    Raises VmcoreError for a file that is not an ELF core at all.
    """
    try:
        with open(path, "rb") as file:
            head = file.read(_NT_ELF64.size)
            if len(head) < _NT_ELF64.size or head[:4] != b"\x7fELF":
                if head[:8] == b"KDUMP   " or head[:8] == b"DISKDUMP":
                    return None  # kdump-compressed: drgn (libkdumpfile) reads its own header
                raise VmcoreError(f"{path}: not a crash dump (no ELF or kdump header); "
                                  "hint: give the vmcore written by kdump or QEMU "
                                  "dump-guest-memory")
            fields = _NT_ELF64.unpack(head)
            if head[4] != 2 or fields[1] != 4:  # ELFCLASS64, ET_CORE
                raise VmcoreError(f"{path}: an ELF file but not a 64-bit core dump; "
                                  "hint: give the vmcore, not the kernel image")
            phoff, phentsize, phnum = fields[5], fields[9], fields[10]
            info: dict[str, str] | None = None
            size = os.fstat(file.fileno()).st_size
            needed = 0
            for index in range(phnum):
                file.seek(phoff + index * phentsize)
                raw = file.read(_PHDR64.size)
                if len(raw) < _PHDR64.size:
                    raise VmcoreError(f"{path}: truncated in its program headers; hint: the "
                                      "dump was cut short, copy it again")
                p_type, _flags, offset, _va, _pa, filesz, _memsz, _align = _PHDR64.unpack(raw)
                needed = max(needed, offset + filesz)
                if p_type != _PT_NOTE:
                    continue
                file.seek(offset)
                for name, _kind, desc in _notes(file.read(filesz)):
                    if name == "VMCOREINFO":
                        info = {}
                        for line in desc.decode("ascii", "replace").splitlines():
                            key, sep, value = line.partition("=")
                            if sep:
                                info[key] = value
            if needed > size:
                raise VmcoreError(f"{path}: truncated: its headers describe {needed:,} bytes "
                                  f"but the file has {size:,}; hint: the dump was cut short "
                                  "(disk full? an interrupted copy?), copy it again")
            return info
    except OSError as exc:
        raise VmcoreError(f"{path}: {exc.strerror or exc}") from exc


def _elf_build_id(path: str) -> str | None:
    """Return the GNU build id note of an ELF executable (vmlinux), or None."""
    with open(path, "rb") as file:
        head = file.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return None
        phoff = struct.unpack_from("<Q", head, 32)[0]
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        for index in range(phnum):
            file.seek(phoff + index * phentsize)
            p_type, _flags, offset, _va, _pa, filesz = struct.unpack("<IIQQQQ", file.read(40))
            if p_type != _PT_NOTE:
                continue
            file.seek(offset)
            for name, kind, desc in _notes(file.read(filesz)):
                if name == "GNU" and kind == 3:  # NT_GNU_BUILD_ID
                    return desc.hex()
    return None


def _import_drgn() -> Any:
    """Import drgn, or say how to install it."""
    try:
        import drgn
    except ImportError as exc:
        raise VmcoreError(f"reading a vmcore needs drgn, which is not installed; hint: "
                          f"{_INSTALL_HINT}") from exc
    return drgn


def _check_files(vmcore: str, vmlinux: str) -> None:
    """Refuse missing or unreadable files before drgn sees them."""
    for path, what in ((vmcore, "vmcore"), (vmlinux, "vmlinux")):
        if not os.path.isfile(path):
            raise VmcoreError(f"{path}: no such {what} file")
        if not os.access(path, os.R_OK):
            raise VmcoreError(f"{path}: permission denied")


def open_vmcore(vmcore: str, vmlinux: str) -> VmcoreImage:
    """Open a crash dump and its vmlinux with drgn, checking that they belong together."""
    _check_files(vmcore, vmlinux)
    info = read_vmcoreinfo(vmcore)
    if info is not None and not info:
        info = None
    elf_core = info is not None or _is_elf(vmcore)
    if elf_core and info is None:
        raise VmcoreError(
            f"{vmcore}: no VMCOREINFO note, so the kernel in it cannot be found; hint: run "
            "QEMU with `-device vmcoreinfo` and a guest kernel with CONFIG_FW_CFG_SYSFS, or "
            "take the dump with kdump")
    build_id = _elf_build_id(vmlinux)
    if build_id is None:
        raise VmcoreError(f"{vmlinux}: not an ELF kernel image with a build id; hint: give "
                          "the vmlinux with debug info of the dumped kernel")
    if info is not None and info.get("BUILD-ID") and info["BUILD-ID"] != build_id:
        raise VmcoreError(
            f"{vmlinux}: build id {build_id} is not the dumped kernel's "
            f"({info['BUILD-ID']}, release {info.get('OSRELEASE', '?')}); hint: give the "
            "vmlinux of exactly that build (e.g. the -dbg package of that release)")
    drgn = _import_drgn()
    prog = drgn.Program()
    try:
        prog.set_core_dump(vmcore)
    except (ValueError, OSError, drgn.FaultError) as exc:
        raise VmcoreError(f"{vmcore}: drgn cannot read it ({_one_line(exc)}); hint: the "
                          "dump may be truncated or damaged, copy it again") from exc
    try:
        prog.load_debug_info([vmlinux])
    except drgn.MissingDebugInfoError as exc:
        raise VmcoreError(f"{vmlinux}: no usable debug info ({_one_line(exc)}); hint: "
                          "give the vmlinux built with CONFIG_DEBUG_INFO") from exc
    try:
        prog.type("struct page_owner")
    except LookupError as exc:
        raise VmcoreError(f"{vmlinux}: no DWARF type `struct page_owner`: either the kernel "
                          "has no CONFIG_PAGE_OWNER or the vmlinux has no debug info; hint: "
                          "give the vmlinux with debug info (not the stripped image)") from exc
    if info is None:
        info = _vmcoreinfo_from_prog(prog)
    return VmcoreImage(prog=prog, path=vmcore, vmlinux=vmlinux, vmcoreinfo=info)


def _is_elf(path: str) -> bool:
    """Tell whether a file starts with the ELF magic."""
    with open(path, "rb") as file:
        return file.read(4) == b"\x7fELF"


def _vmcoreinfo_from_prog(prog: Any) -> dict[str, str]:
    """Read VMCOREINFO from the kernel's own copy (kdump-compressed images)."""
    try:
        text = prog["vmcoreinfo_data"].string_().decode("ascii", "replace")
    except (LookupError, ValueError):
        return {}
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            info[key] = value
    return info


def _one_line(exc: BaseException) -> str:
    """Return the first line of an exception's message."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
