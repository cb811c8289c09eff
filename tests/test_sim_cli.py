"""The simulator commands through click: output, messages and exit codes."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pageowner.cli import cli
from pageowner.sim import state as sim_state
from pageowner.sim.workloads import WORKLOADS


def invoke(*args: str, state: Path | None = None) -> Result:
    """Run the CLI in-process, with --state appended when given."""
    argv = list(args)
    if state is not None:
        argv += ["--state", str(state)]
    return CliRunner().invoke(cli, argv, catch_exceptions=False)


@pytest.fixture()
def machine(tmp_path: Path) -> Path:
    """A booted 6.12 machine with page_owner on."""
    directory = tmp_path / "m"
    result = invoke("boot", "--kernel", "6.12", "--mem", "256M", "--cmdline",
                    "page_owner=on wl=work", state=directory)
    assert result.exit_code == 0, result.output
    return directory


def test_boot_prints_the_kernel_log(machine: Path, tmp_path: Path) -> None:
    result = invoke("boot", "--kernel", "6.1", "--mem", "256M", "--cmdline",
                    "page_owner=on console=ttyS0 wl=work", state=tmp_path / "other")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].endswith("] Command line: page_owner=on console=ttyS0 wl=work")
    assert any(line.endswith('Unknown kernel command line parameters "wl=work", will be '
                             "passed to user space.") for line in lines)
    assert any(line.endswith("Node 0, zone    DMA32: page owner found early allocated "
                             "1279 pages") for line in lines)
    assert any(line.endswith("Node 0, zone      DMA: page owner found early allocated "
                             "0 pages") for line in lines)


def test_page_owner_off_has_no_debugfs_file(tmp_path: Path) -> None:
    result = invoke("boot", "--mem", "128M", state=tmp_path)
    assert result.exit_code == 0
    assert any(line.endswith("] page_owner is disabled") for line in result.stdout.splitlines())
    assert "page_owner=on" in result.stderr
    dump = invoke("dump", state=tmp_path)
    assert dump.exit_code == 1
    # The hint `capture` gives on a real machine booted without it.
    assert dump.stderr == ("pageowner: /sys/kernel/debug/page_owner: No such file or directory: "
                           "page_owner is not enabled (the machine was booted without "
                           "page_owner=on)\nhint: boot with page_owner=on on the kernel command "
                           "line: pageowner boot --force --cmdline page_owner=on\n")
    assert dump.stdout == ""


def test_boot_refuses_to_replace_a_machine(machine: Path) -> None:
    result = invoke("boot", "--cmdline", "page_owner=on", state=machine)
    assert result.exit_code == 1
    assert "already booted here; use --force" in result.stderr
    forced = invoke("boot", "--force", "--mem", "128M", "--cmdline", "page_owner=on",
                    state=machine)
    assert forced.exit_code == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--cmdline", "page_owner=maybe"], "Malformed early option 'page_owner'"),
    (["--mem", "lots"], "--mem"),
    (["--mem", "1M"], "at least 32M"),
    (["--mem", "1T"], "at most 64G"),
    (["--kernel", "2.6"], "'2.6' is not one of"),
    (["--system-map", "a", "--kallsyms", "b"], "at most one symbol table"),
])
def test_bad_boot_options_are_usage_errors(tmp_path: Path, args: list[str],
                                           message: str) -> None:
    result = invoke("boot", *args, state=tmp_path)
    assert result.exit_code == 2
    assert message in result.stderr


def test_the_state_comes_from_the_environment(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAGEOWNER_STATE", str(tmp_path / "env"))
    assert invoke("boot", "--mem", "128M", "--cmdline", "page_owner=on").exit_code == 0
    assert (tmp_path / "env" / "state.bin").exists()


def test_run_and_dump(machine: Path, tmp_path: Path) -> None:
    result = invoke("run", "leak", "--pages", "500", "--seconds", "5", state=machine)
    assert result.exit_code == 0, result.stderr
    assert "500 pages leaked" in result.stdout
    first = invoke("dump", state=machine)
    second = invoke("dump", state=machine)
    assert first.exit_code == 0 and first.stdout_bytes == second.stdout_bytes
    assert first.stdout.count("leaky_refill+") == 500
    out = tmp_path / "po.txt"
    written = invoke("dump", "-o", str(out), state=machine)
    assert written.exit_code == 0 and out.read_bytes() == first.stdout_bytes
    assert "records written to" in written.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["nothing"], "no workload 'nothing'"),
    (["init"], "runs once, at boot"),
    (["shmem", "--size", "4"], "has no option '--size'"),
    (["shmem", "--mb"], "--mb needs a value"),
    (["shmem", "--mb", "lots"], "not a size"),
    (["leak", "--pages", "-3"], "must not be negative"),
    (["vmalloc", "--kind", "rom"], "choose one of module, bpf"),
    (["anon", "--exit=yes"], "takes no value"),
])
def test_bad_workloads_are_usage_errors(machine: Path, args: list[str], message: str) -> None:
    result = invoke("run", *args, state=machine)
    assert result.exit_code == 2
    assert message in result.stderr


def test_run_without_a_machine(tmp_path: Path) -> None:
    result = invoke("run", "compact", state=tmp_path / "none")
    assert result.exit_code == 1
    assert "no machine booted here; run 'pageowner boot' first" in result.stderr


def test_a_workload_too_big_for_memory_fails_and_keeps_the_state(machine: Path) -> None:
    before = (machine / "state.bin").read_bytes()
    result = invoke("run", "shmem", "--mb", "1G", state=machine)
    assert result.exit_code == 1
    assert "out of memory: dd: page allocation failure: order:0" in result.stderr
    assert (machine / "state.bin").read_bytes() == before


def test_workloads_lists_the_registry() -> None:
    result = invoke("workloads")
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert names == list(WORKLOADS)
    for name in ("init", "pagecache", "shmem", "anon", "fork", "slab", "vmalloc", "thp", "net",
                 "cma", "leak", "compact", "memcg", "capture"):
        assert name in names
    assert "--mb SIZE" in result.stdout


@pytest.mark.parametrize(("version", "flag", "ok"), [
    ("6.12", "--show-stacks", True),
    ("6.9", "--show-stacks", True),
    ("6.7", "--show-stacks", False),
    ("6.12", "--handles", False),
    ("6.12", "--stacks-handles", False),
    ("6.19", "--handles", True),
    ("6.19", "--stacks-handles", True),
])
def test_page_owner_stacks_files_by_version(tmp_path: Path, version: str, flag: str,
                                            ok: bool) -> None:
    assert invoke("boot", "--kernel", version, "--mem", "128M", "--cmdline",
                  "page_owner=on", state=tmp_path).exit_code == 0
    result = invoke("dump", flag, state=tmp_path)
    if ok:
        assert result.exit_code == 0 and result.stdout.endswith("\n\n")
        return
    name = {"--show-stacks": "show_stacks", "--handles": "show_handles",
            "--stacks-handles": "show_stacks_handles"}[flag]
    assert result.exit_code == 1
    assert result.stderr == (f"pageowner: /sys/kernel/debug/page_owner_stacks/{name}: "
                             f"No such file or directory (kernel {version} does not have "
                             "it)\n")


def test_threshold_filters_show_stacks(machine: Path) -> None:
    everything = invoke("dump", "--show-stacks", state=machine).stdout
    counts = [int(line.split(": ")[1]) for line in everything.splitlines()
              if line.startswith("nr_base_pages: ")]
    big = invoke("dump", "--threshold", "100", state=machine).stdout
    kept = [int(line.split(": ")[1]) for line in big.splitlines()
            if line.startswith("nr_base_pages: ")]
    assert kept == [count for count in counts if count >= 100] and kept


def test_debugfs_tree(machine: Path, tmp_path: Path) -> None:
    tree = tmp_path / "debugfs"
    result = invoke("dump", "--debugfs-tree", str(tree), state=machine)
    assert result.exit_code == 0
    assert (tree / "page_owner").read_bytes() == invoke("dump", state=machine).stdout_bytes
    assert (tree / "page_owner_stacks" / "show_stacks").read_bytes() == invoke(
        "dump", "--show-stacks", state=machine).stdout_bytes
    # "%llu": no newline on 6.9-6.19
    assert (tree / "page_owner_stacks" / "count_threshold").read_bytes() == b"0"
    assert not (tree / "page_owner_stacks" / "show_handles").exists()
    # a machine without page_owner: the files disappear, as in a real debugfs
    invoke("boot", "--force", "--mem", "128M", state=machine)
    assert invoke("dump", "--debugfs-tree", str(tree), state=machine).exit_code == 0
    assert not (tree / "page_owner").exists()
    assert not (tree / "page_owner_stacks").exists()


def test_symbol_table_addresses_and_sizes(tmp_path: Path) -> None:
    # GIVEN a System.map with the functions of the tmpfs write path
    names = ["__alloc_pages_nodemask", "alloc_pages_vma", "shmem_alloc_page",
             "shmem_alloc_and_acct_page", "shmem_getpage_gfp", "generic_perform_write",
             "__generic_file_write_iter", "generic_file_write_iter", "zz_end"]
    system_map = tmp_path / "System.map"
    system_map.write_text("".join(f"{0xffffffff81100000 + i * 0x1000:016x} T {name}\n"
                                  for i, name in enumerate(names)))
    # WHEN a 4.6 machine (bare [<address>] frames) boots with it and writes tmpfs
    assert invoke("boot", "--kernel", "4.6", "--mem", "128M", "--cmdline", "page_owner=on",
                  "--system-map", str(system_map), state=tmp_path / "s").exit_code == 0
    assert invoke("run", "shmem", "--mb", "1", state=tmp_path / "s").exit_code == 0
    text = invoke("dump", state=tmp_path / "s").stdout
    # THEN each frame's address is the symbol's plus the offset, and sizes are 0x1000
    frames = [line for line in text.splitlines() if "shmem_alloc_page+" in line]
    assert frames
    for line in frames:
        address = int(line.split("[<")[1].split(">]")[0], 16)
        offset = int(line.split("+0x")[1].split("/")[0], 16)
        assert address == 0xffffffff81100000 + 2 * 0x1000 + offset
        assert line.endswith("/0x1000")


def test_a_missing_symbol_table_is_an_error(tmp_path: Path) -> None:
    result = invoke("boot", "--system-map", str(tmp_path / "nope"), state=tmp_path)
    assert result.exit_code == 1
    assert "nope: No such file or directory" in result.stderr


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = invoke("demo", "--lines", "60", "--dir", str(folder))
    assert result.exit_code == 0
    assert result.stdout.startswith("$ pageowner boot --kernel ")
    assert "leaky_refill+" in result.stdout
    assert " times, " in result.stdout and "pages:" in result.stdout
    # The files the steps name are left in the folder the demo names at the end, and the
    # printed report is the head of sorted.txt, with the cut marked.
    report = (folder / "sorted.txt").read_text().splitlines()
    assert (folder / "page_owner.txt").stat().st_size > 0
    assert (folder / "state").is_dir()
    out = result.stdout.splitlines()
    marker = f"[... cut here: {len(report) - 60} more lines in {folder / 'sorted.txt'}]"
    cut = out.index(marker)
    assert out[cut - 60:cut] == report[:60]
    assert f"The demo's files are in {folder}: page_owner.txt (the dump), sorted.txt (the whole" \
        in out
    # A folder holding something else is refused, not overwritten.
    again = invoke("demo", "--dir", str(folder))
    assert again.exit_code == 2 and "new or empty folder" in again.stderr


def test_proc_tree_describes_the_simulated_kernel(machine: Path, tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    result = invoke("dump", "--proc-tree", str(proc), state=machine)
    assert result.exit_code == 0
    assert (proc / "cmdline").read_text() == "page_owner=on wl=work\n"
    assert (proc / "sys" / "kernel" / "osrelease").read_text() == "6.12.0-pageowner-sim\n"
    assert (proc / "sys" / "kernel" / "hostname").read_text() == "(none)\n"
    config = gzip.decompress((proc / "config.gz").read_bytes()).decode()
    assert "CONFIG_PAGE_OWNER=y" in config.splitlines()
    # AND /proc/uptime reads the simulated clock, not the host's
    clock_ns = sim_state.load(machine, with_symbols=False).clock_ns
    seconds, centis = divmod(clock_ns // 10**7, 100)
    assert (proc / "uptime").read_text() == f"{seconds}.{centis:02d} 0.00\n"
    assert clock_ns > 10**9
    # AND boot_id is a version 4 UUID, the same each time the trees are laid out (one boot)
    boot_id = (proc / "sys" / "kernel" / "random" / "boot_id").read_text()
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n",
                        boot_id)
    again = tmp_path / "again"
    assert invoke("dump", "--proc-tree", str(again), state=machine).exit_code == 0
    assert (again / "sys" / "kernel" / "random" / "boot_id").read_text() == boot_id


def test_trees_exclude_output_options(machine: Path, tmp_path: Path) -> None:
    result = invoke("dump", "--debugfs-tree", str(tmp_path / "d"), "--show-stacks", state=machine)
    assert result.exit_code == 2
    assert "drop -o and --show-stacks" in result.stderr
