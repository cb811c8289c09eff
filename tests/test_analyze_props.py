"""Properties of the analysis commands, on generated dumps and on the real ones.

- diff(x, x) is empty, whatever the key.
- `grep SELECTION | sort` prints what `sort SELECTION` prints, for --pid, --tgid and --name.
  Without --cull the two reports must be byte-identical. With --cull, page_owner_sort
  prints the selected field in each group's line (", PID 1"), so there the selection is
  given to sort as well: `grep SEL | sort SEL --cull=...` must equal `sort SEL --cull=...`.
"""

from __future__ import annotations

import lzma
import os
from functools import cache

import pytest
from click.testing import Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pageowner.analyze.analysis import GROUP_KEYS
from pageowner.analyze.diff import DiffOptions, diff_files
from pageowner.errors import InputError
from tests.analyze_strategies import COMMS, dumps
from tests.analyze_support import REAL, REAL_DUMPS, SHOW_STACKS, fixture
from tests.analyze_support import run as run_cli

_SETTINGS = settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])  # fmt: skip

_SELECTIONS = st.one_of(
    st.tuples(st.just("--pid"), st.lists(st.integers(0, 6), min_size=1, max_size=3)),
    st.tuples(st.just("--tgid"), st.lists(st.integers(0, 6), min_size=1, max_size=3)),
    st.tuples(st.just("--name"), st.lists(st.sampled_from(COMMS), min_size=1, max_size=3)),
)


def _argument(values: list[object]) -> str:
    return ",".join(str(value) for value in values)


def _grep_then_sort(dump: bytes, option: str, value: str, sort_args: list[str]) -> bytes:
    grepped = run_cli(["grep", f"{option}={value}", "-"], stdin=dump)
    # grep(1): 1 when nothing was selected
    assert grepped.exit_code == (0 if grepped.stdout_bytes else 1), grepped.stderr
    if any(arg.startswith("--cull") for arg in sort_args):
        sort_args = [*sort_args, f"{option}={value}"]
    sorted_ = run_cli(["sort", *sort_args, "-", "-"], stdin=grepped.stdout_bytes)
    return _report(sorted_)


def _sort_selected(dump: bytes, option: str, value: str, sort_args: list[str]) -> bytes:
    result = run_cli(["sort", *sort_args, f"{option}={value}", "-", "-"], stdin=dump)
    return _report(result)


def _report(result: Result) -> bytes:
    """Return sort's report; an input without a single record is an empty one.

    sort refuses such an input (docs/compat.md 15: exit 1, naming it) where the C tool
    writes an empty report; a selection that matches nothing still gives an empty report.
    """
    if result.exit_code == 1:
        message = result.stderr.strip().splitlines()[-1]
        assert message.endswith(("empty input: no page_owner data",
                                 "(and no other block could be read)")), message  # fmt: skip
        return b""
    assert result.exit_code == 0, result.stderr
    return result.stdout_bytes


@_SETTINGS
@given(dump=dumps(), selection=_SELECTIONS,
       sort_args=st.sampled_from([[], ["-m"], ["--cull=st"], ["--cull=pid,name", "-a"]]))
def test_grep_then_sort_equals_sort_with_the_selection_generated(
    dump: bytes, selection: tuple[str, list[object]], sort_args: list[str]
) -> None:  # fmt: skip
    option, values = selection
    value = _argument(values)
    assert _grep_then_sort(dump, option, value, sort_args) == _sort_selected(
        dump, option, value, sort_args
    )


@cache
def _real(name: str) -> bytes:
    return lzma.decompress((REAL / name).read_bytes())


# Selections that occur in the real dumps (and one that does not).
_REAL_SELECTIONS = [
    (REAL_DUMPS[2], "--pid", "1"),
    (REAL_DUMPS[2], "--tgid", "9,15"),
    (REAL_DUMPS[2], "--name", "swapper/0,kworker/u2:0"),
    (REAL_DUMPS[3], "--pid", "49,93"),
    (REAL_DUMPS[3], "--tgid", "1"),
    (REAL_DUMPS[3], "--name", "find"),
    (REAL_DUMPS[3], "--name", "no-such-task"),
    (REAL_DUMPS[1], "--pid", "1"),  # 5.10 prints no pid: both select nothing
]


@pytest.mark.parametrize(("name", "option", "value"), _REAL_SELECTIONS)
def test_grep_then_sort_equals_sort_with_the_selection_real(
    name: str, option: str, value: str
) -> None:
    dump = _real(name)
    for sort_args in (["-m"], ["-m", "--cull=st"]):
        expected = _sort_selected(dump, option, value, sort_args)
        assert _grep_then_sort(dump, option, value, sort_args) == expected
        if name != REAL_DUMPS[1] and value != "no-such-task":
            assert expected  # the selection is not empty, so the property says something


_KEYS = [key.name for key in GROUP_KEYS]


@_SETTINGS
@given(dump=dumps(), by=st.sampled_from(_KEYS), exact=st.booleans())
def test_diff_of_a_dump_with_itself_is_empty_generated(dump: bytes, by: str, exact: bool) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dump.txt")
        with open(path, "wb") as out:
            out.write(dump)
        if not dump:
            # an empty input is an error in every command (docs/reader.md e)
            with pytest.raises(InputError, match="empty input"):
                diff_files(path, path, DiffOptions(by=by, exact=exact))
            return
        result = diff_files(path, path, DiffOptions(by=by, exact=exact))
    assert result.entries == () and result.hidden == 0 and result.growth == ()
    assert result.unchanged == result.before_groups == result.after_groups


@pytest.mark.parametrize("name", [*REAL_DUMPS, *SHOW_STACKS, "era-3.19.txt", "modern-6.12.txt"])
def test_diff_of_a_real_dump_with_itself_is_empty(name: str) -> None:
    path = fixture(name)
    result = run_cli(["diff", path, path, "--format", "json"])
    assert result.exit_code == 0
    assert '"entries": []' in result.stdout and '"hidden": 0' in result.stdout
