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


NATIVE_THREADS = r"""
import os, sys
from pathlib import Path
import numpy as np
import twinbayes as tb
from twinbayes.run.aside import Aside

out, parent = Path(sys.argv[1]), os.getpid()
patient = tb.Patient.from_csv("bundled:theophylline.csv", subject=1)
tb.fit(tb.load_spec("pk_1cmt_oral"), patient, seed=1, draws=200, tune=200, progress=False)
a = np.random.default_rng(0).standard_normal((600, 600))

def work(i):
    def fn():
        b = a @ a  # BLAS in the child, after the parent's BLAS threads ran
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots()
        ax.plot(b[0, :50])
        fig.savefig(out / f"{i}.png")
        plt.close(fig)
        (out / f"{i}.txt").write_text("child" if os.getpid() != parent else "parent")
    return fn

native = []
for i in range(12):
    a @ a  # wake the BLAS pool right before the fork
    native.append(len(os.listdir("/proc/self/task")))
    with Aside(work(i), timeout=30.0) as aside:
        forked = aside.forked
        aside.wait()
    print(i, forked, (out / f"{i}.txt").read_text())
print("native threads at fork", min(native))
"""


def test_a_fork_with_nutpie_and_blas_threads_alive_finishes_in_the_child(tmp_path):
    """Aside's children are made while native threads live (nutpie's sampler after a fit, the BLAS
    pool just used): twelve forks in a row each finish their work in the child (a child stuck on
    a lock a native thread held at the fork would run out its timeout and the work be done here)."""
    proc = subprocess.run(
        [sys.executable, "-c", NATIVE_THREADS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:12] == [f"{i} True child" for i in range(12)]
    assert int(lines[12].rsplit(" ", 1)[1]) > 1  # the process had native threads at each fork
