"""The ``sweeper`` command: argument parsing, the commands' logic, live progress."""
