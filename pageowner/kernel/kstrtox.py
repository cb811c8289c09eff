"""Boolean boot parameters as lib/kstrtox.c reads them, and page_owner= by era.

Shared by the simulator's command line (pageowner.sim.cmdline) and the live checks of a
real one (pageowner.live.host), so both read `page_owner=` exactly alike.
"""

from __future__ import annotations

from pageowner.kernel.kernels import KernelVersion

__all__ = ["kstrtobool", "page_owner_setting"]


def kstrtobool(text: str | None, enable_disable: bool = False) -> bool | None:
    """Convert y/n/1/0/on/off/true/false as lib/kstrtox.c does; None when invalid.

    Only the first one or two characters count, as in the kernel. `enable_disable` adds
    e/E and d/D, which the 7.3 kstrtobool() also takes.

    >>> kstrtobool("yes"), kstrtobool("off"), kstrtobool("maybe")
    (True, False, None)
    >>> kstrtobool("enable"), kstrtobool("enable", True), kstrtobool("Disable", True)
    (None, True, False)
    """
    if not text:
        return None
    first = text[0].lower()
    if first in "yt1" or (enable_disable and first == "e"):
        return True
    if first in "nf0" or (enable_disable and first == "d"):
        return False
    if first == "o" and len(text) > 1:
        second = text[1].lower()
        if second == "n":
            return True
        if second == "f":
            return False
    return None


def page_owner_setting(value: str, enabled: bool, kernel: KernelVersion) -> bool:
    """Return page_owner's state after one `page_owner=VALUE` on a kernel's command line.

    3.19-5.13 compare the value with "on" and only ever switch it on; 5.14+ call
    kstrtobool(), which leaves the previous setting when the value is invalid (it writes
    its result only on success), so `page_owner=on page_owner=maybe` stays on.

    >>> page_owner_setting("off", True, KernelVersion("5.10"))
    True
    >>> page_owner_setting("maybe", True, KernelVersion("6.12"))
    True
    >>> page_owner_setting("off", True, KernelVersion("6.12"))
    False
    """
    if not kernel.page_owner_kstrtobool:
        return enabled or value == "on"
    parsed = kstrtobool(value, kernel.kstrtobool_enable_disable)
    return enabled if parsed is None else parsed
