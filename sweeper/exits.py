"""Exit codes of every sweeper command, and the one line an error is told in: shared by all rooms.

===== =====================================================================================
code  meaning
===== =====================================================================================
0     done (``validate``/``plan``: the file is valid and something can be trained)
1     some trials failed (recorded with their reasons; the others finished)
2     bad input: a sweep file, a name, a path or an option; one line per problem
3     the sweep stopped: the same error hit ``failures.stop_after_same_error`` points
4     the tracking store (MLflow) or the Ray cluster could not be used
70    an internal error (a bug): one line; ``SWEEPER_DEBUG=1`` prints the traceback too
130   interrupted (Ctrl-C); 143: terminated (SIGTERM)
===== =====================================================================================
"""
from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_STOPPED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED = 70, 130, 143

#: For ``--help``: the codes above, one line each.
EXIT_CODES_HELP = """exit status:
  0    done
  1    some trials failed (recorded with their reasons)
  2    bad input: sweep file, name, path or option (one line per problem)
  3    sweep stopped: the same error on failures.stop_after_same_error points
  4    the tracking store (MLflow) or the Ray cluster could not be used
  70   internal error (SWEEPER_DEBUG=1 prints the traceback)
  130  interrupted (Ctrl-C)
  143  terminated (SIGTERM)"""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of ``exc``'s message, at most ``limit`` characters, else its type
    (Ray's and MLflow's messages run to pages; a tag and the terminal take one line)."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "") or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
