"""Fixtures for the symbolization tests: small ELF files compiled with gcc -g -O2.

The programs have a static function with the same name in two files (told apart by
size), always_inline functions nested two deep (so inline chains exist), direct and
indirect calls, and a relocatable "module" with code in .text, .text.unlikely and
.init.text. A third program is a kernel allocation path in miniature, for the simulator's
`boot --vmlinux`. Tests that need gcc, addr2line or objdump skip with the reason when absent.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

COMMON_H = """\
extern volatile int sink;
int work(int x);
int b_entry(int x);
"""

A_C = """\
#include "common.h"

static __attribute__((noinline)) int dup_static(int x)
{
\treturn x * 3 + sink;
}

static inline __attribute__((always_inline)) int leaf_inline(int x)
{
\tsink += x;
\treturn work(x) + 1;
}

static inline __attribute__((always_inline)) int mid_inline(int x)
{
\tint y = leaf_inline(x * 2);
\treturn y + work(y);
}

__attribute__((noinline)) int outer(int x)
{
\treturn mid_inline(x) + dup_static(x);
}

__attribute__((noinline)) int via_pointer(int (*fn)(int), int x)
{
\treturn fn(x) + fn(x + 1) + 1;
}

int main(int argc, char **argv)
{
\t(void)argv;
\treturn outer(argc) + via_pointer(work, argc) + b_entry(argc);
}
"""

B_C = """\
#include "common.h"

volatile int sink;

__attribute__((noinline)) int work(int x)
{
\tsink = x;
\treturn x + 1;
}

static __attribute__((noinline)) int dup_static(int x)
{
\tint i, s = 0;

\tfor (i = 0; i < x; i++)
\t\ts += work(i) * sink;
\treturn s + work(s);
}

__attribute__((noinline)) int b_entry(int x)
{
\treturn dup_static(x) + work(x);
}
"""

MOD_C = """\
extern int helper_ext(int x);
extern volatile int mod_sink;

static inline __attribute__((always_inline)) int mod_leaf(int x)
{
\tmod_sink = x;
\treturn helper_ext(x) * 2;
}

__attribute__((noinline)) int mod_alloc(int x)
{
\treturn mod_leaf(x) + 1;
}

__attribute__((cold, noinline)) int mod_cold(int x)
{
\treturn helper_ext(x) - 1;
}

__attribute__((section(".init.text"), noinline)) int mod_init(void)
{
\treturn mod_alloc(3) + mod_cold(4);
}
"""

# The allocation path, each function calling the next (names from several kernel eras).
# Every call is `sink = callee(...)` on a line of its own: the store to the volatile is the
# instruction after the call, so the return address is on the call's line. A function
# calls its second callee with `sink` as the argument, so nothing is reloaded between a
# call and its store. exc_page_fault reaches handle_mm_fault only through a pointer,
# asm_exc_page_fault reaches exc_page_fault through pf_entry_body, and __pte_alloc calls
# pte_alloc_one twice, and vma_alloc_folio_noprof reaches alloc_pages_mpol_noprof through
# folio_alloc_mpol's tail call. The calls that reach a frame's callee indirectly come
# first, away from where the learned offsets (late in those functions) would point.
ALLOC_C = """\
/* A kernel allocation path in miniature: each function calls the next. */
#define NOIPA __attribute__((noipa))

volatile int sink;

NOIPA int __set_page_owner(int order)
{
\tsink = order;
\treturn order + 1;
}

NOIPA int post_alloc_hook(int order)
{
\tsink = __set_page_owner(order);
\treturn sink;
}

NOIPA int prep_new_page(int order)
{
\tsink = post_alloc_hook(order);
\treturn sink;
}

NOIPA int get_page_from_freelist(int order)
{
\tsink = post_alloc_hook(order);
\tif (sink > 3)
\t\tsink = prep_new_page(sink);
\treturn sink;
}

NOIPA int __alloc_pages_noprof(int order)
{
\tsink = get_page_from_freelist(order);
\treturn sink;
}

NOIPA int __alloc_pages_nodemask(int order)
{
\tsink = get_page_from_freelist(order);
\treturn sink;
}

NOIPA int alloc_pages_mpol_noprof(int order)
{
\tsink = __alloc_pages_noprof(order);
\treturn sink;
}

/* Ends in a jump to alloc_pages_mpol_noprof (a tail call): no frame of its own. */
NOIPA int folio_alloc_mpol(int order)
{
\treturn alloc_pages_mpol_noprof(order);
}

NOIPA int vma_alloc_folio_noprof(int order)
{
\tsink = folio_alloc_mpol(order);
\tsink = __set_page_owner(sink);
\treturn sink;
}

NOIPA int pte_alloc_one(int order)
{
\tsink = alloc_pages_mpol_noprof(order);
\treturn sink;
}

NOIPA int alloc_pages_vma(int order)
{
\tsink = __alloc_pages_nodemask(order);
\treturn sink;
}

NOIPA int __pte_alloc(int order)
{
\tsink = pte_alloc_one(order);
\tif (sink & 8)
\t\tsink = pte_alloc_one(sink);
\treturn sink;
}

NOIPA int __handle_mm_fault(int flags)
{
\tsink = vma_alloc_folio_noprof(flags);
\tif (sink & 1)
\t\tsink = __pte_alloc(sink);
\treturn sink;
}

NOIPA int handle_mm_fault(int flags)
{
\tsink = __handle_mm_fault(flags);
\tif (sink & 2)
\t\tsink = alloc_pages_vma(sink);
\treturn sink;
}

NOIPA int __do_page_fault(int flags)
{
\tsink = handle_mm_fault(flags);
\treturn sink;
}

int (*volatile fault)(int) = handle_mm_fault;

/* Calls the function above it on the stack only through a pointer. */
NOIPA int exc_page_fault(int flags)
{
\tsink = fault(flags);
\treturn sink;
}

NOIPA int pf_entry_body(int flags)
{
\tsink = exc_page_fault(flags);
\treturn sink;
}

/* Reaches exc_page_fault through a function the catalogue does not know. */
NOIPA int asm_exc_page_fault(int flags)
{
\tsink = pf_entry_body(flags);
\tsink = __set_page_owner(sink);
\treturn sink;
}

int main(int argc, char **argv)
{
\t(void)argv;
\treturn asm_exc_page_fault(argc) + __do_page_fault(argc);
}
"""


@dataclass(frozen=True)
class Program:
    """A compiled test program and where its sources are."""

    path: Path
    source_dir: Path
    dwarf_version: int


def _gcc() -> str:
    """Return gcc's path or skip."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: the symbolization tests compile small C programs")
    return gcc


def _write_sources(directory: Path) -> None:
    """Write the C sources of the test programs."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "common.h").write_text(COMMON_H)
    (directory / "a.c").write_text(A_C)
    (directory / "b.c").write_text(B_C)
    (directory / "mod.c").write_text(MOD_C)


def _compile_program(directory: Path, dwarf_version: int) -> Program:
    """Compile a.c and b.c into an executable with gcc -g -O2."""
    gcc = _gcc()
    _write_sources(directory)
    output = directory / f"prog-dwarf{dwarf_version}"
    subprocess.run(
        [gcc, "-g", f"-gdwarf-{dwarf_version}", "-O2", "-fno-omit-frame-pointer",
         "-Wl,--build-id", "-o", str(output), "a.c", "b.c"],
        cwd=directory, check=True, capture_output=True,
    )  # fmt: skip
    return Program(output, directory, dwarf_version)


@pytest.fixture(scope="session")
def program(tmp_path_factory: pytest.TempPathFactory) -> Program:
    """The test program with DWARF 5 (gcc 11+'s default)."""
    return _compile_program(tmp_path_factory.mktemp("prog5"), 5)


@pytest.fixture(scope="session")
def program_dwarf4(tmp_path_factory: pytest.TempPathFactory) -> Program:
    """The test program with DWARF 4 (what older kernels are built with)."""
    return _compile_program(tmp_path_factory.mktemp("prog4"), 4)


@pytest.fixture(scope="session")
def alloc_program(tmp_path_factory: pytest.TempPathFactory) -> Program:
    """The miniature allocation path, compiled with gcc -g -O2 into an executable."""
    gcc = _gcc()
    directory = tmp_path_factory.mktemp("alloc")
    (directory / "alloc.c").write_text(ALLOC_C)
    output = directory / "vmlinux"
    subprocess.run([gcc, "-g", "-O2", "-Wl,--build-id", "-o", str(output), "alloc.c"],
                   cwd=directory, check=True, capture_output=True)  # fmt: skip
    return Program(output, directory, 5)


@pytest.fixture(scope="session")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding testmod.ko, a relocatable object like a kernel module."""
    gcc = _gcc()
    directory = tmp_path_factory.mktemp("modules")
    _write_sources(directory / "src")
    target = directory / "kernel" / "drivers"
    target.mkdir(parents=True)
    subprocess.run(
        [gcc, "-g", "-O2", "-c", "-Wa,--generate-missing-build-notes=no", "-o",
         str(target / "testmod.ko"), "mod.c"],
        cwd=directory / "src", check=True, capture_output=True,
    )  # fmt: skip
    return directory


@pytest.fixture(scope="session")
def addr2line() -> str:
    """Return addr2line's path or skip (binutils gives the golden answers)."""
    path = shutil.which("addr2line")
    if path is None:
        pytest.skip("binutils' addr2line is not installed: no golden answers to compare with")
    return path


@pytest.fixture(scope="session")
def objdump() -> str:
    """Return objdump's path or skip."""
    path = shutil.which("objdump")
    if path is None:
        pytest.skip("binutils' objdump is not installed: no disassembly to compare with")
    return path


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A private cache directory per test."""
    return tmp_path / "cache"
