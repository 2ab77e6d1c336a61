"""Work done aside in a forked child (twinbayes.run.aside.Aside): by the child when all goes well,
by this process when the child fails or hangs, never forked with other threads alive."""

import subprocess
import sys

SCRIPT = r"""
import os, sys, threading, time
from pathlib import Path
from twinbayes.run.aside import Aside

out, parent = Path(sys.argv[1]), os.getpid()

def write(name, fail_in_child=False, hang_in_child=False):
    def fn():
        if os.getpid() != parent and fail_in_child:
            raise RuntimeError("only in the child")
        if os.getpid() != parent and hang_in_child:
            time.sleep(60)
        (out / name).write_text("child" if os.getpid() != parent else "parent")
    return fn

with Aside(write("ok")) as a:
    forked = a.forked
    (out / "meanwhile").write_text("parent")  # this process goes on while the child works
    a.wait()
print("ok", forked, (out / "ok").read_text())

with Aside(write("failed", fail_in_child=True)) as a:
    forked = a.forked
    a.wait()
print("failed", forked, (out / "failed").read_text())

t0 = time.monotonic()
with Aside(write("hung", hang_in_child=True), timeout=1.0) as a:
    a.wait()
print("hung", (out / "hung").read_text(), time.monotonic() - t0 < 10)

try:
    with Aside(write("interrupted", hang_in_child=True)) as a:
        pid = a._pid
        raise KeyboardInterrupt
except KeyboardInterrupt:
    try:
        os.waitpid(pid, os.WNOHANG)
        print("interrupted: child left behind")
    except ChildProcessError:
        print("interrupted: child stopped and reaped")

stop = threading.Event()
other = threading.Thread(target=stop.wait)
other.start()
with Aside(write("threads")) as a:
    forked = a.forked
    a.wait()
stop.set(); other.join()
print("threads", forked, (out / "threads").read_text())
"""


def test_work_aside_is_done_by_the_child_or_else_here(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "ok True child",  # forked: the child wrote the file
        "failed True parent",  # the child's error: done again here (where it would raise)
        "hung parent True",  # a child past its timeout is killed and the work done here
        "interrupted: child stopped and reaped",  # an error before wait leaves no child
        "threads False parent",  # another thread alive: no fork
    ]
    assert proc.stderr == ""  # the child's error is not reported from the child
