"""Write profile data as pprof's gzip-compressed profile.proto.

Go's `pprof`, Pyroscope, Parca, Perfetto UI and speedscope all open it. Each distinct frame
is one location; each function (name and module) one function entry; each module, and the
kernel text as `vmlinux`, one mapping. A frame that `pageowner symbolize` gave file:line
names that file and line. The message classes come from `pprof_proto/profile_pb2.py`,
generated from `pprof_proto/profile.proto` (`make proto`).
"""

from __future__ import annotations

import gzip
from typing import BinaryIO

from pageowner import __version__
from pageowner.analyze.analysis import InputKind
from pageowner.analyze.pprof import ProfileData
from pageowner.errors import SpecError
from pageowner.kernel.frames import frame_label
from pageowner.model import Frame
from pageowner.report.pprof_proto import profile_pb2

__all__ = ["SAMPLE_TYPES", "encode_profile", "write_profile"]

# (type, unit) of each sample value, in the order of ProfileSample's fields.
SAMPLE_TYPES: tuple[tuple[str, str], ...] = (
    ("pages", "count"),
    ("bytes", "bytes"),
    ("allocations", "count"),
)
KERNEL_MAPPING = "vmlinux"
# Numeric labels carry a unit so that pprof shows them as numbers (and -tagfocus takes ranges).
_NUMERIC_UNITS = {"pid": "pid", "tgid": "tgid", "order": "order", "node": "node"}


class _Strings:
    """The profile's string table: index 0 is the empty string."""

    def __init__(self, profile: profile_pb2.Profile) -> None:
        self._profile = profile
        self._index: dict[str, int] = {}
        self("")

    def __call__(self, text: str) -> int:
        index = self._index.get(text)
        if index is None:
            index = self._index[text] = len(self._profile.string_table)
            self._profile.string_table.append(text)
        return index


def _source_line(frame: Frame) -> tuple[str, int]:
    """Return the file and line of a symbolized frame's own function, or ("", 0).

    `symbolize` appends the address's file:line and then each inlined call site's; the last
    one is in the function the frame names.
    """
    if not frame.source:
        return "", 0
    where = frame.source.split()[-1]
    path, _, line = where.rpartition(":")
    if not path or not line.isdigit():
        return where, 0
    return path, int(line)


class _Builder:
    """Intern mappings, functions and locations while samples are added."""

    def __init__(self, profile: profile_pb2.Profile) -> None:
        self.profile = profile
        self.string = _Strings(profile)
        self.mappings: dict[str, int] = {}
        self.functions: dict[tuple[str, str], int] = {}
        self.locations: dict[Frame, int] = {}

    def mapping(self, module: str) -> int:
        """Return the id of a module's mapping, adding it on first use."""
        mapping_id = self.mappings.get(module)
        if mapping_id is None:
            mapping_id = self.mappings[module] = len(self.mappings) + 1
            # has_functions: the names are already there, so pprof must not symbolize.
            self.profile.mapping.add(id=mapping_id, filename=self.string(module),
                                     has_functions=True)  # fmt: skip
        return mapping_id

    def function(self, name: str, path: str) -> int:
        """Return the id of a function, adding it on first use."""
        function_id = self.functions.get((name, path))
        if function_id is None:
            function_id = self.functions[(name, path)] = len(self.functions) + 1
            self.profile.function.add(id=function_id, name=self.string(name),
                                      system_name=self.string(name),
                                      filename=self.string(path))  # fmt: skip
        return function_id

    def location(self, frame: Frame) -> int:
        """Return the id of a frame's location, adding it on first use."""
        location_id = self.locations.get(frame)
        if location_id is None:
            location_id = self.locations[frame] = len(self.locations) + 1
            path, line = _source_line(frame)
            mapping_id = self.mapping(frame.module or KERNEL_MAPPING)
            location = self.profile.location.add(id=location_id, mapping_id=mapping_id,
                                                 address=frame.address or 0)  # fmt: skip
            location.line.add(function_id=self.function(frame_label(frame), path), line=line)
        return location_id


def encode_profile(data: ProfileData, default_type: str = "pages") -> profile_pb2.Profile:
    """Build the profile message of some profile data; pprof shows `default_type` first."""
    if default_type not in {kind for kind, _ in SAMPLE_TYPES}:
        raise SpecError(f"no sample type {default_type!r} in a pageowner profile")
    profile = profile_pb2.Profile()
    build = _Builder(profile)
    string = build.string
    for kind, unit in SAMPLE_TYPES:
        profile.sample_type.add(type=string(kind), unit=string(unit))
    profile.default_sample_type = string(default_type)
    profile.period_type.type = string("pages")
    profile.period_type.unit = string("count")
    profile.period = 1
    profile.comment.append(string(f"{data.source}: {data.kind.value}, "
                                  f"{data.page_size}-byte pages"))  # fmt: skip
    if data.kind is InputKind.SHOW_STACKS:
        profile.comment.append(string("allocations are not counted in a show_stacks file"))
    profile.comment.append(string(f"written by pageowner {__version__}"))
    for sample in data.samples:
        message = profile.sample.add()
        message.location_id.extend(build.location(frame) for frame in sample.frames)
        message.value.extend((sample.pages, sample.pages * data.page_size, sample.allocations))
        for key, value in sample.labels:
            if isinstance(value, int):
                message.label.add(key=string(key), num=value,
                                  num_unit=string(_NUMERIC_UNITS.get(key, "count")))
            else:
                message.label.add(key=string(key), str=string(value))
    return profile


def write_profile(data: ProfileData, out: BinaryIO, default_type: str = "pages") -> None:
    """Write profile data gzip-compressed, the way pprof stores it (mtime 0: reproducible)."""
    payload = encode_profile(data, default_type).SerializeToString(deterministic=True)
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as compressed:
        compressed.write(payload)
