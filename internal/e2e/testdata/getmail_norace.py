"""Run getmail (path in argv[1], the rest its arguments) with its wait for a
delivery child made race-free.

getmail 6.18 (getmailcore.baseclasses.ForkingBase) forks its delivery child,
then installs a SIGCHLD handler that notifies a Condition, then waits on that
Condition: a child that exits before the parent waits is never noticed, and
the delivery fails after the socket timeout with "waiting child pid N timed
out". On a loaded machine that happens. Here the parent simply waits for the
child with waitpid(). Nothing else about getmail is changed.
"""
import os
import runpy
import sys

from getmailcore import baseclasses
from getmailcore.exceptions import getmailOperationError


def prepare_child(self):
    pass  # no SIGCHLD handler: wait_for_child reaps the child


def wait_for_child(self, childpid):
    pid, status = os.waitpid(childpid, 0)
    if os.WIFSIGNALED(status):
        raise getmailOperationError(
            "child pid %d killed by signal %d" % (pid, os.WTERMSIG(status)))
    if not os.WIFEXITED(status):
        raise getmailOperationError("child pid %d failed to exit" % pid)
    return os.WEXITSTATUS(status)


baseclasses.ForkingBase._prepare_child = prepare_child
baseclasses.ForkingBase._wait_for_child = wait_for_child
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
