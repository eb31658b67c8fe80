"""Run a command and report its own peak resident set, and nothing of ours.

``python benchmarks/peak_rss.py ARGV...`` (stdlib only) runs ``ARGV`` as its child (output passed
through), then prints ``peak_rss_kb N`` as its last line and exits with the child's code.

Why a process in between: the peak ``wait4`` reports for a child includes the memory of
the process that spawned it, as it was at the spawn (``vfork`` shares the parent's memory
until ``exec``, and the kernel keeps the larger high-water mark of the two; ``fork``
copies the parent's resident pages). Spawned from the benchmark process, which has just
fetched and decoded a 100,000-record account for the floor, ``listingbot once`` was
reported at the benchmark's size, not its own. Spawned from this small interpreter, the
figure is the command's.
"""

from __future__ import annotations

import os
import subprocess
import sys

PREFIX = "peak_rss_kb "


def main(argv: list[str]) -> int:
    sys.stdout.flush()
    child = subprocess.Popen(argv)
    _pid, status, usage = os.wait4(child.pid, 0)
    print(f"{PREFIX}{usage.ru_maxrss}", flush=True)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
