"""The kernel command line, parsed the way init/main.c and kernel/params.c parse it.

`parse_cmdline` splits the line with the kernel's `next_arg` rules (double quotes, the first
`=` splits name from value, `-` and `_` are the same in names, `--` ends the kernel's part),
runs the early parameters we model (`page_owner`, `mem`, `cma`, ...), hands unknown ones to
init as arguments or environment the way `unknown_bootoption` does, and keeps the dmesg
lines a real boot would print about them. Facts come from the v6.12 sources (lib/cmdline.c,
kernel/params.c, init/main.c, lib/kstrtox.c, mm/page_owner.c).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pageowner.errors import SpecError
from pageowner.kernel.kernels import KernelVersion, version_key
from pageowner.kernel.kstrtox import kstrtobool, page_owner_setting

__all__ = [
    "BootParams",
    "kstrtobool",
    "memparse",
    "next_arg",
    "parameq",
    "parse_cmdline",
    "split_args",
]

# CONFIG_INIT_ENV_ARG_LIMIT on x86: how many init arguments and environment strings fit.
MAX_INIT_ARGS = 32
MAX_INIT_ENVS = 32
# "init/main.c: Print all 'unknown' parameters on the kernel command line" [likely v5.8].
_UNKNOWN_REPORT_SINCE = (5, 8)
_SPACES = " \t\n\v\f\r"


def _dash2underscore(char: str) -> str:
    """Map `-` to `_`, as kernel/params.c compares parameter names."""
    return "_" if char == "-" else char


def parameq(a: str, b: str) -> bool:
    """Tell whether two parameter names are equal, `-` and `_` being the same.

    >>> parameq("page-owner", "page_owner")
    True
    """
    return len(a) == len(b) and all(
        _dash2underscore(x) == _dash2underscore(y) for x, y in zip(a, b, strict=True)
    )


def _parameqn(a: str, b: str, n: int) -> bool:
    """Compare the first `n` characters the way parameqn() does (a shorter `a` fails)."""
    if len(a) < n or len(b) < n:
        return False
    return parameq(a[:n], b[:n])


def next_arg(args: str) -> tuple[str, str | None, str]:
    """Split the first `param[=value]` off a command line; return (param, value, rest).

    Quotes follow lib/cmdline.c: a leading `"` starts a quoted word, any `"` toggles
    quoting, the first `=` splits, and one pair of quotes around the value is dropped.

    >>> next_arg('foo="a b" bar')
    ('foo', 'a b', 'bar')
    """
    in_quote = quoted = False
    if args.startswith('"'):
        args = args[1:]
        in_quote = quoted = True
    equals = 0
    i = 0
    while i < len(args):
        char = args[i]
        if char in _SPACES and not in_quote:
            break
        if equals == 0 and char == "=":
            equals = i
        if char == '"':
            in_quote = not in_quote
        i += 1
    word = args[:i]
    end = len(word)
    value: str | None = None
    param = word
    if equals:
        param = word[:equals]
        value_start = equals + 1
        value_end = end
        if word[value_start : value_start + 1] == '"':
            value_start += 1
            if end > 0 and word[end - 1] == '"':
                value_end = end - 1
        if quoted and end > 0 and word[end - 1] == '"':
            value_end = min(value_end, end - 1)
        value = word[value_start:max(value_end, value_start)]
    elif quoted and end > 0 and word[end - 1] == '"':
        param = word[: end - 1]
    rest = args[i + 1 :] if i < len(args) else ""
    return param, value, rest.lstrip(_SPACES)


def split_args(cmdline: str) -> tuple[list[tuple[str, str | None]], str | None]:
    """Split a command line into (param, value) pairs; return them and what follows `--`.

    >>> split_args("a b=1 -- c")
    ([('a', None), ('b', '1')], 'c')
    """
    args = cmdline.lstrip(_SPACES)
    pairs: list[tuple[str, str | None]] = []
    while args:
        param, value, args = next_arg(args)
        if value is None and param == "--":
            return pairs, args
        pairs.append((param, value))
    return pairs, None


def _simple_strtoull(text: str) -> tuple[int, str]:
    """Read a number like simple_strtoull(base 0); return it and the unread rest."""
    base = 10
    digits = "0123456789"
    rest = text
    if rest[:2].lower() == "0x" and len(rest) > 2 and rest[2] in "0123456789abcdefABCDEF":
        base, rest = 16, rest[2:]
        digits = "0123456789abcdef"
    elif rest.startswith("0"):
        base, digits = 8, "01234567"
    value = 0
    index = 0
    while index < len(rest) and rest[index].lower() in digits:
        value = value * base + int(rest[index], base)
        index += 1
    return value, rest[index:]


def memparse(text: str) -> tuple[int, str]:
    """Parse a size with an optional K/M/G/T/P/E suffix, as memparse() does.

    >>> memparse("512M")
    (536870912, '')
    >>> memparse("0x1000k")
    (4194304, '')
    """
    value, rest = _simple_strtoull(text)
    shifts = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
    if rest[:1].lower() in shifts:
        value <<= shifts[rest[:1].lower()]
        rest = rest[1:]
    return value, rest


@dataclass
class _Parsed:
    """What the parsing passes collect before they are frozen into BootParams."""

    kernel: KernelVersion
    page_owner: bool = False
    page_owner_value: str | None = None
    mem_limit: int | None = None
    cma_bytes: int = 0
    memcg: bool = True
    thp: str = "always"
    numa_nodes: int = 1
    numa_node_bytes: int = 0
    quiet: bool = False
    init: str | None = None
    argv: list[str] = field(default_factory=list)
    envp: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _early_page_owner(parsed: _Parsed, value: str | None) -> bool:
    """page_owner=: literal `on` before v5.14, kstrtobool() since (mm/page_owner.c)."""
    if value is None:
        return False
    parsed.page_owner_value = value
    kernel = parsed.kernel
    before = parsed.page_owner
    parsed.page_owner = page_owner_setting(value, before, kernel)
    if kernel.page_owner_kstrtobool:
        # An invalid value is an error the early-param loop reports; the setting stays.
        return kstrtobool(value, kernel.kstrtobool_enable_disable) is not None
    # v3.19-v5.13 compare with "on" and return 0 whatever the value.
    if value != "on":
        parsed.notes.append(
            f"page_owner={value} leaves page_owner "
            f"{'on' if before else 'off'}: before 5.14 only page_owner=on changes it"
        )
    return True


def _early_mem(parsed: _Parsed, value: str | None) -> bool:
    """mem=: arch/x86 parse_memopt() drops RAM above the given address; 0 is invalid."""
    if value is None:
        return False
    if value == "nopentium":
        return True
    size, _ = memparse(value)
    if size == 0:
        return False
    parsed.mem_limit = size
    return True


def _early_cma(parsed: _Parsed, value: str | None) -> bool:
    """cma=: the size of the default CMA area (mm/cma.c early_cma)."""
    if value is None:
        return False
    size, rest = memparse(value)
    if rest.startswith("@") or rest.startswith(":"):
        return True  # placement and per-node forms: accepted, placement not modelled
    parsed.cma_bytes = size
    return True


# MAX_NUMNODES of x86_64_defconfig (NODES_SHIFT 6), the config of the real 7.3 dumps.
MAX_NUMNODES = 64


def _early_numa(parsed: _Parsed, value: str | None) -> bool:
    """numa=fake=N or numa=fake=<size>[KMG]: x86 NUMA emulation (arch/x86/mm/numa.c).

    `numa=off` (one node) and other `numa=` words are accepted; a malformed `fake=` is
    ignored with the kernel's warning, and the machine keeps one node.
    """
    if value is None:
        return False
    if value == "off":
        parsed.numa_nodes = 1
        return True
    if not value.startswith("fake="):
        return True  # noacpi, nohmat, ...: accepted, nothing to model
    spec = value[len("fake="):]
    size, rest = memparse(spec)
    if spec[:1].isdigit() and not spec.isdigit() and rest == "" and size:
        # numa=fake=<size><suffix>: nodes of that size
        parsed.numa_node_bytes = size
        return True
    if spec.isdigit() and 0 < int(spec) <= MAX_NUMNODES:
        parsed.numa_nodes = int(spec)
        return True
    parsed.notes.append(f"numa=fake={spec}: not a node count from 1 to {MAX_NUMNODES}; "
                        "the machine keeps one node")
    return True


def _early_quiet(parsed: _Parsed, value: str | None) -> bool:
    """quiet: console loglevel 4 (init/main.c)."""
    parsed.quiet = True
    return True


def _early_ignore(parsed: _Parsed, value: str | None) -> bool:
    """An early parameter the simulator accepts and does not model."""
    return True


# early_param() handlers: called for every exact match (dash/underscore blind) in the
# early pass; returning False prints "Malformed early option".
EARLY_PARAMS: dict[str, Callable[[_Parsed, str | None], bool]] = {
    "page_owner": _early_page_owner,
    "mem": _early_mem,
    "cma": _early_cma,
    "quiet": _early_quiet,
    "numa": _early_numa,
    "debug": _early_ignore,
    "loglevel": _early_ignore,
    "earlyprintk": _early_ignore,
    "earlycon": _early_ignore,
    "nokaslr": _early_ignore,
    "mitigations": _early_ignore,
    "memblock": _early_ignore,
    "nosmp": _early_ignore,
    "maxcpus": _early_ignore,
}


def _setup_init(parsed: _Parsed, rest: str) -> bool:
    """init=: names the init binary and drops the init arguments given before it."""
    parsed.init = rest
    del parsed.argv[:]
    return True


def _setup_flag(parsed: _Parsed, rest: str) -> bool:
    """ro/rw-style flags: they match only when nothing follows the name."""
    return rest == ""


def _setup_value(parsed: _Parsed, rest: str) -> bool:
    """A `name=` __setup parameter the simulator accepts and does not model."""
    return True


def _setup_cgroup_disable(parsed: _Parsed, rest: str) -> bool:
    """cgroup_disable=memory turns memcg off: no `Charged ...` lines (v5.18+)."""
    if "memory" in rest.split(","):
        parsed.memcg = False
    return True


def _setup_thp(parsed: _Parsed, rest: str) -> bool:
    """transparent_hugepage=always|madvise|never (mm/huge_memory.c)."""
    if rest in ("always", "madvise", "never"):
        parsed.thp = rest
        return True
    return False


# __setup() parameters, matched as prefixes of the whole `name=value` string the way
# obsolete_checksetup() does; a handler returning False lets the search go on.
SETUP_PARAMS: tuple[tuple[str, Callable[[_Parsed, str], bool]], ...] = (
    ("init=", _setup_init),
    ("rdinit=", _setup_init),
    ("console=", _setup_value),
    ("root=", _setup_value),
    ("rootfstype=", _setup_value),
    ("rootwait", _setup_flag),
    ("ro", _setup_flag),
    ("rw", _setup_flag),
    ("panic=", _setup_value),
    ("hugepages=", _setup_value),
    ("cgroup_disable=", _setup_cgroup_disable),
    ("transparent_hugepage=", _setup_thp),
)

_BOOTLOADER_IDS = ("BOOT_IMAGE=", "kexec")


@dataclass(frozen=True)
class BootParams:
    """What a kernel command line sets, for one kernel version."""

    cmdline: str
    page_owner: bool
    mem_limit: int | None = None
    cma_bytes: int = 0
    memcg: bool = True
    thp: str = "always"
    # NUMA emulation (numa=fake=N, or nodes of numa_node_bytes each)
    numa_nodes: int = 1
    numa_node_bytes: int = 0
    quiet: bool = False
    init: str | None = None
    init_argv: tuple[str, ...] = ()
    init_envp: tuple[str, ...] = ()
    # What the kernel lists in its "Unknown kernel command line parameters" line.
    unknown: tuple[str, ...] = ()
    # Hints of ours (not kernel messages), e.g. a pre-5.14 `page_owner=1`.
    notes: tuple[str, ...] = ()
    version: str = ""

    def dmesg_lines(self) -> list[str]:
        """Return the kernel log lines this command line causes, without timestamps."""
        lines = [f"Command line: {self.cmdline}", f"Kernel command line: {self.cmdline}"]
        if self.unknown and version_key(self.version) >= _UNKNOWN_REPORT_SINCE:
            joined = " ".join(self.unknown)
            lines.append(
                f'Unknown kernel command line parameters "{joined}", '
                "will be passed to user space."
            )
        return lines


def _early_pass(parsed: _Parsed, pairs: list[tuple[str, str | None]]) -> None:
    """Run do_early_param() over every argument before the kernel's `--`."""
    for param, value in pairs:
        for name, handler in EARLY_PARAMS.items():
            if parameq(param, name) and not handler(parsed, value):
                shown = param if value is None else f"{param}={value}"
                parsed.errors.append(f"Malformed early option '{param}' ({shown})")


def _obsolete_checksetup(parsed: _Parsed, line: str) -> bool:
    """Tell whether an early or __setup parameter owns `line` (init/main.c)."""
    had_early = False
    for name in EARLY_PARAMS:
        n = len(name)
        if _parameqn(line, name, n) and (len(line) == n or line[n] == "="):
            had_early = True
    for name, handler in SETUP_PARAMS:
        if _parameqn(line, name, len(name)) and handler(parsed, line[len(name) :]):
            return True
    return had_early


def _unknown_bootoption(parsed: _Parsed, param: str, value: str | None) -> None:
    """Hand a parameter nobody owns to init, as argv or as environment."""
    line = param if value is None else f"{param}={value}"
    if any(line.startswith(ident) for ident in _BOOTLOADER_IDS):
        return
    if _obsolete_checksetup(parsed, line):
        return
    if "." in param:
        return  # an unused module parameter: modprobe finds it in /proc/cmdline
    if value is not None:
        for index, existing in enumerate(parsed.envp):
            if existing.startswith(param + "="):
                parsed.envp[index] = line
                return
        if len(parsed.envp) + 2 > MAX_INIT_ENVS:
            raise SpecError(f"kernel command line: Too many boot env vars at `{line}'")
        parsed.envp.append(line)
    else:
        if len(parsed.argv) + 1 > MAX_INIT_ARGS:
            raise SpecError(f"kernel command line: Too many boot init vars at `{line}'")
        parsed.argv.append(line)


def parse_cmdline(cmdline: str, kernel: KernelVersion) -> BootParams:
    """Parse a kernel command line for one kernel version, or raise SpecError.

    >>> from pageowner.kernel.kernels import get_kernel
    >>> parse_cmdline("page_owner=on wl=work", get_kernel("6.12")).unknown
    ('wl=work',)
    """
    if "\0" in cmdline:
        raise SpecError("kernel command line: NUL byte in the command line")
    parsed = _Parsed(kernel)
    pairs, after_dashes = split_args(cmdline)
    _early_pass(parsed, pairs)
    if parsed.errors:
        raise SpecError("kernel command line: " + "; ".join(parsed.errors))
    for param, value in pairs:
        _unknown_bootoption(parsed, param, value)
    unknown = tuple(parsed.argv) + tuple(parsed.envp)
    init_argv = list(parsed.argv)
    if after_dashes:
        rest_pairs, _ = split_args(after_dashes)
        for param, value in rest_pairs:
            init_argv.append(param if value is None else f"{param}={value}")
    return BootParams(
        cmdline=cmdline,
        page_owner=parsed.page_owner,
        mem_limit=parsed.mem_limit,
        cma_bytes=parsed.cma_bytes,
        memcg=parsed.memcg,
        thp=parsed.thp,
        numa_nodes=parsed.numa_nodes,
        numa_node_bytes=parsed.numa_node_bytes,
        quiet=parsed.quiet,
        init=parsed.init,
        init_argv=tuple(init_argv),
        init_envp=("HOME=/", "TERM=linux", *parsed.envp),
        unknown=unknown,
        notes=tuple(parsed.notes),
        version=kernel.version,
    )
