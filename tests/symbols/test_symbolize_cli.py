"""`pageowner symbolize` from the command line: outputs, exit codes and one-line errors."""

from __future__ import annotations

import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Program
from elfwriter import symbol_sections, text_section, write_elf
from test_symbolize_dump import make_case

from pageowner.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the command line in-process; return the exit code, stdout and stderr."""
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def dump(program: Program, tmp_path: Path) -> Path:
    """A dump of the compiled program's frames."""
    path = tmp_path / "dump.txt"
    path.write_text(make_case(program).text)
    return path


def test_writes_symbolized_dump(program: Program, dump: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    # WHEN the command runs with -o
    output = tmp_path / "out.txt"
    code, out, err = run_cli(["symbolize", "--vmlinux", str(program.path), "--cache-dir",
                              str(tmp_path / "c"), "-o", str(output), str(dump)], capsys)
    # THEN it succeeds quietly and every frame line has its source group
    assert (code, out, err) == (0, "", "")
    frames = [line for line in output.read_text().splitlines() if line.startswith(" ")]
    assert frames and all(line.endswith(")") and ".c:" in line for line in frames)


def test_stdout_and_json(program: Program, dump: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    # WHEN --format json goes to stdout
    code, out, err = run_cli(["symbolize", "--vmlinux", str(program.path), "--format", "json",
                              "--no-cache", str(dump)], capsys)  # fmt: skip
    # THEN stdout is one JSON document listing the frames
    assert code == 0 and err == ""
    document = json.loads(out)
    assert document["vmlinux"] == str(program.path)
    assert document["frames"] and all(frame["lines"] for frame in document["frames"])


def test_stdin_and_xz_input(program: Program, dump: Path, tmp_path: Path) -> None:
    # GIVEN the same dump on stdin and as a .xz file
    packed = tmp_path / "dump.txt.xz"
    packed.write_bytes(lzma.compress(dump.read_bytes()))
    command = [sys.executable, "-m", "pageowner", "symbolize", "--vmlinux", str(program.path),
               "--cache-dir", str(tmp_path / "c")]  # fmt: skip
    # WHEN both are symbolized
    from_stdin = subprocess.run(command + ["-"], input=dump.read_bytes(), capture_output=True,
                                cwd=ROOT, check=False)  # fmt: skip
    from_xz = subprocess.run(command + [str(packed)], capture_output=True, cwd=ROOT,
                             check=False)  # fmt: skip
    # THEN they give the same output as a plain file
    plain = subprocess.run(command + [str(dump)], capture_output=True, cwd=ROOT, check=False)
    assert plain.returncode == 0 and plain.stdout.count(b".c:") > 10
    assert from_stdin.stdout == plain.stdout == from_xz.stdout
    assert from_stdin.returncode == from_xz.returncode == 0


def test_stripped_elf_exit_1_one_line(tmp_path: Path, dump: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    # GIVEN an ELF without .symtab
    elf = tmp_path / "vmlinux.stripped"
    elf.write_bytes(write_elf([text_section()]))
    output = tmp_path / "out.txt"
    code, out, err = run_cli(["symbolize", "--vmlinux", str(elf), "-o", str(output),
                              str(dump)], capsys)  # fmt: skip
    # THEN exit 1, one line on stderr, no output file
    assert code == 1 and out == ""
    assert err == (f"pageowner: {elf}: no symbol table (stripped ELF?); use the unstripped "
                   "vmlinux or the -dbg package's copy\n")  # fmt: skip
    assert not output.exists()


def test_no_dwarf_warns_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an ELF with symbols only, and a dump whose one frame is in it
    elf = tmp_path / "vmlinux.nodebug"
    elf.write_bytes(write_elf([text_section()] + symbol_sections([("kmalloc", 0x401000, 0x40)])))
    dump = tmp_path / "dump.txt"
    dump.write_text("Page allocated via order 0, mask 0xcc0\n kmalloc+0x4/0x40\n"
                    " [<0000000000401008>] 0x401008\n\n")  # fmt: skip
    code, out, err = run_cli(["symbolize", "--vmlinux", str(elf), "--no-cache", str(dump)],
                             capsys)  # fmt: skip
    # THEN it succeeds with a one-line warning; raw addresses still get their symbol, sized
    # as kallsyms would (up to the next symbol, here the end of .text)
    assert code == 0
    assert err == (f"pageowner: warning: {elf}: no DWARF debug info; frames get symbols, "
                   "not file:line\n")  # fmt: skip
    assert out == ("Page allocated via order 0, mask 0xcc0\n kmalloc+0x4/0x40\n"
                   " [<0000000000401008>] kmalloc+0x8/0x100\n\n")  # fmt: skip


def test_corrupt_elf_exit_1_no_traceback(tmp_path: Path, dump: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    # GIVEN an ELF cut in half
    blob = write_elf([text_section()] + symbol_sections([("kmalloc", 0x401000, 0x40)]))
    elf = tmp_path / "vmlinux.cut"
    elf.write_bytes(blob[: len(blob) // 2])
    code, _, err = run_cli(["symbolize", "--vmlinux", str(elf), "--no-cache", str(dump)],
                           capsys)  # fmt: skip
    # THEN exit 1 with one line naming the file
    assert code == 1
    assert err.startswith(f"pageowner: {elf}: truncated ELF") and err.count("\n") == 1


def test_mismatch_exit_1(program: Program, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    # GIVEN a dump from another build (names the program lacks)
    dump = tmp_path / "other.txt"
    dump.write_text("Page allocated via order 0, mask 0xcc0\n get_page_from_freelist+0x1/0x40\n"
                    " __alloc_pages+0x2/0x50\n\n")  # fmt: skip
    code, out, err = run_cli(["symbolize", "--vmlinux", str(program.path), "--no-cache",
                              str(dump)], capsys)  # fmt: skip
    # THEN exit 1: both frames named, and how to go on anyway
    assert code == 1 and out == ""
    assert err == ("pageowner: 2 of 2 frames do not match the ELF it was resolved against "
                   "(another kernel build?): get_page_from_freelist+0x1/0x40 (no such "
                   "function); __alloc_pages+0x2/0x50 (no such function); --allow-mismatch "
                   "writes the output anyway\n")


def test_missing_vmlinux_is_usage_error(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    # WHEN --vmlinux is left out THEN click reports a usage error (exit 2)
    code, _, err = run_cli(["symbolize", str(tmp_path / "dump.txt")], capsys)
    assert code == 2 and "--vmlinux" in err


def test_refuses_to_overwrite_input(program: Program, dump: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    before = dump.read_bytes()
    code, _, err = run_cli(["symbolize", "--vmlinux", str(program.path), "--no-cache", "-o",
                            str(dump), str(dump)], capsys)  # fmt: skip
    assert code == 1 and "refusing to overwrite the input" in err
    assert dump.read_bytes() == before
