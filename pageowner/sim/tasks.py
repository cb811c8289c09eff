"""Tasks of the simulated machine: pids, thread groups and command names.

page_owner records `current`'s pid, tgid and comm (v5.11+/v5.18+). Pids are handed out in
order as the kernel's pid allocator does after boot (no reuse below the last one), comms
are cut to TASK_COMM_LEN - 1 = 15 bytes, and threads share their leader's tgid.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TASK_COMM_LEN", "Task", "TaskTable"]

TASK_COMM_LEN = 16


@dataclass(frozen=True)
class Task:
    """One task: pid, thread group id and command name."""

    pid: int
    tgid: int
    comm: str


class TaskTable:
    """All tasks ever seen, by index; records keep the index of the task they ran in."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []
        self._by_task: dict[Task, int] = {}
        self.next_pid = 1

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: int) -> Task:
        return self.tasks[index]

    def add(self, pid: int, tgid: int, comm: str) -> int:
        """Register a task with a known pid (or return the one already there)."""
        comm = comm.encode("utf-8", "surrogateescape")[: TASK_COMM_LEN - 1].decode(
            "utf-8", "surrogateescape")
        task = Task(pid, tgid, comm)
        index = self._by_task.get(task)
        if index is None:
            index = self._by_task[task] = len(self.tasks)
            self.tasks.append(task)
            self.next_pid = max(self.next_pid, pid + 1)
        return index

    def spawn(self, comm: str, tgid: int | None = None) -> int:
        """Create a new task (a thread when tgid is given) with the next free pid."""
        pid = self.next_pid
        return self.add(pid, pid if tgid is None else tgid, comm)

    def rename(self, index: int, comm: str) -> int:
        """Return the same task after an exec under a new comm."""
        task = self.tasks[index]
        return self.add(task.pid, task.tgid, comm)

    def skip_pids(self, count: int) -> None:
        """Use up pids of short-lived tasks that leave no pages behind."""
        self.next_pid += count

    def find(self, comm: str) -> int | None:
        """Return the newest task with this comm, if any."""
        for index in range(len(self.tasks) - 1, -1, -1):
            if self.tasks[index].comm == comm:
                return index
        return None
