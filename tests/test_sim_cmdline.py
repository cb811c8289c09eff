"""The kernel command-line parser: lib/cmdline.c splitting, init/main.c dispatch."""

from __future__ import annotations

import pytest

from pageowner.errors import SpecError
from pageowner.kernel.kernels import KernelVersion, get_kernel
from pageowner.kernel.kstrtox import page_owner_setting
from pageowner.sim.cmdline import kstrtobool, memparse, next_arg, parse_cmdline, split_args

# (command line, expected (param, value) pairs, expected text after "--")
SPLIT_CASES = [
    ("a b=1", [("a", None), ("b", "1")], None),
    ("  lead   and\ttabs  ", [("lead", None), ("and", None), ("tabs", None)], None),
    ('foo="a b" bar', [("foo", "a b"), ("bar", None)], None),
    ('"quoted word" x', [("quoted word", None), ("x", None)], None),
    ('"k=v w"', [("k", "v w")], None),
    ('k="v"w', [("k", 'v"w')], None),
    ("k=a=b", [("k", "a=b")], None),
    ("=v", [("=v", None)], None),
    ('k=""', [("k", "")], None),
    ("a -- b c=d", [("a", None)], "b c=d"),
    ("a --", [("a", None)], ""),
    ("a --x", [("a", None), ("--x", None)], None),
    ("a --=x", [("a", None), ("--", "x")], None),
]


@pytest.mark.parametrize(("line", "pairs", "rest"), SPLIT_CASES)
def test_split_args_follows_next_arg(line: str, pairs: list[tuple[str, str | None]],
                                     rest: str | None) -> None:
    # GIVEN a command line WHEN it is split THEN params, values and `--` are the kernel's
    assert split_args(line) == (pairs, rest)


def test_next_arg_returns_the_rest_without_leading_spaces() -> None:
    assert next_arg("a=1    b") == ("a", "1", "b")


MEMPARSE_CASES = [
    ("512M", 512 << 20, ""),
    ("1G", 1 << 30, ""),
    ("4k", 4096, ""),
    ("0x1000", 0x1000, ""),
    ("010", 8, ""),
    ("1T", 1 << 40, ""),
    ("12MB", 12 << 20, "B"),
    ("abc", 0, "abc"),
    ("3x", 3, "x"),
]


@pytest.mark.parametrize(("text", "value", "rest"), MEMPARSE_CASES)
def test_memparse(text: str, value: int, rest: str) -> None:
    assert memparse(text) == (value, rest)


@pytest.mark.parametrize(("text", "value"), [
    ("on", True), ("ON", True), ("off", False), ("of", False), ("y", True), ("yes", True),
    ("n", False), ("1", True), ("0", False), ("true", True), ("false", False),
    ("o", None), ("maybe", None), ("", None), (None, None), ("2", None),
])
def test_kstrtobool(text: str | None, value: bool | None) -> None:
    assert kstrtobool(text) == value
    # 7.3's kstrtobool() takes e/E (true) and d/D (false) on top of these
    assert kstrtobool(text, enable_disable=True) == value


@pytest.mark.parametrize("version", ["6.12", "7.3"])
def test_an_invalid_page_owner_value_keeps_the_setting(version: str) -> None:
    # kstrtobool() writes its result only on success; the kernel says "Malformed early
    # option" and boots with the previous value (the simulator refuses such a line)
    assert page_owner_setting("maybe", True, KernelVersion(version)) is True
    assert page_owner_setting("maybe", False, KernelVersion(version)) is False
    assert page_owner_setting("enable", False, KernelVersion(version)) is (version == "7.3")


PAGE_OWNER_CASES = [
    # version, command line, page_owner enabled
    ("6.12", "page_owner=on", True),
    ("6.12", "page_owner=1", True),
    ("6.12", "page_owner=y", True),
    ("6.12", "page_owner=off", False),
    ("6.12", "page-owner=on", True),
    ("6.12", "page_owner=on page_owner=off", False),
    ("5.14", "page_owner=yes", True),
    ("5.11", "page_owner=on", True),
    ("5.11", "page_owner=1", False),
    ("5.11", "page_owner=yes", False),
    ("3.19", "page_owner=on", True),
    ("3.19", "page_owner=On", False),
    ("6.12", "", False),
    ("6.12", '"page_owner=on"', True),
    ("6.12", "page_owner=on -- page_owner=off", True),
    ("6.12", "-- page_owner=on", False),
    # 3.19-5.13 only ever switch it on
    ("5.11", "page_owner=on page_owner=off", True),
    # 7.3's kstrtobool() also takes e/E and d/D
    ("7.3", "page_owner=enable", True),
    ("7.3", "page_owner=on page_owner=Disable", False),
]


@pytest.mark.parametrize(("version", "line", "enabled"), PAGE_OWNER_CASES)
def test_page_owner_follows_the_version(version: str, line: str, enabled: bool) -> None:
    # KernelVersion, not get_kernel: 7.3 need not be a version the simulator boots
    assert parse_cmdline(line, KernelVersion(version)).page_owner is enabled


@pytest.mark.parametrize(("version", "line", "message"), [
    ("6.12", "page_owner=maybe", "Malformed early option 'page_owner'"),
    ("6.12", "page_owner", "Malformed early option 'page_owner'"),
    ("5.10", "page_owner", "Malformed early option 'page_owner'"),
    ("6.12", "mem=abc", "Malformed early option 'mem'"),
    ("6.12", "mem=0", "Malformed early option 'mem'"),
    ("6.12", "transparent_hugepage=sometimes page_owner=on", None),
])
def test_bad_values_are_errors(version: str, line: str, message: str | None) -> None:
    if message is None:
        # an invalid __setup value is not an error: the kernel hands the word to init
        params = parse_cmdline(line, get_kernel(version))
        assert params.unknown == ("transparent_hugepage=sometimes",)
        return
    with pytest.raises(SpecError, match=message):
        parse_cmdline(line, get_kernel(version))


UNKNOWN_CASES = [
    # line, what "Unknown kernel command line parameters" lists, init argv
    ("page_owner=on wl=work ddmb=640", ("wl=work", "ddmb=640"), ()),
    ("console=ttyS0 quiet root=/dev/vda ro rw", (), ()),
    ("foo bar=1 foo2", ("foo", "foo2", "bar=1"), ("foo", "foo2")),
    ("printk.time=1 BOOT_IMAGE=/vmlinuz kexec", (), ()),
    ("x=1 x=2", ("x=2",), ()),
    ("a init=/bin/sh b", ("b",), ("b",)),
    ("rootwait rootwaitx", ("rootwaitx",), ("rootwaitx",)),
    ("quietly", ("quietly",), ("quietly",)),
    ("a -- b c=1", ("a",), ("a", "b", "c=1")),
    ('env="with space"', ("env=with space",), ()),
]


@pytest.mark.parametrize(("line", "unknown", "argv"), UNKNOWN_CASES)
def test_unknown_parameters_go_to_init(line: str, unknown: tuple[str, ...],
                                       argv: tuple[str, ...]) -> None:
    params = parse_cmdline(line, get_kernel("6.12"))
    assert params.unknown == unknown
    assert params.init_argv == argv


def test_unknown_parameters_are_reported_like_the_kernel() -> None:
    params = parse_cmdline("page_owner=on wl=work ddmb=640", get_kernel("6.1"))
    assert params.dmesg_lines() == [
        "Command line: page_owner=on wl=work ddmb=640",
        "Kernel command line: page_owner=on wl=work ddmb=640",
        'Unknown kernel command line parameters "wl=work ddmb=640", '
        "will be passed to user space.",
    ]


def test_kernels_before_5_8_do_not_list_unknown_parameters() -> None:
    params = parse_cmdline("page_owner=on wl=work", get_kernel("5.4"))
    assert not any("Unknown" in line for line in params.dmesg_lines())


@pytest.mark.parametrize(("line", "mem_limit", "cma", "memcg", "thp"), [
    ("mem=512M", 512 << 20, 0, True, "always"),
    ("mem=0x40000000 cma=64M", 1 << 30, 64 << 20, True, "always"),
    ("cgroup_disable=memory", None, 0, False, "always"),
    ("cgroup_disable=cpu,memory transparent_hugepage=never", None, 0, False, "never"),
    ("cma=16M@0x10000000", None, 0, True, "always"),
])
def test_known_parameters_set_the_machine(line: str, mem_limit: int | None, cma: int,
                                          memcg: bool, thp: str) -> None:
    params = parse_cmdline(line, get_kernel("6.12"))
    assert (params.mem_limit, params.cma_bytes, params.memcg, params.thp) == (
        mem_limit, cma, memcg, thp)


def test_a_pre_5_14_non_on_value_gets_a_hint() -> None:
    params = parse_cmdline("page_owner=1", get_kernel("5.10"))
    assert params.notes and "only page_owner=on" in params.notes[0]
