"""MLflow's standard source tags of the runs this process writes: source name and type, user, git commit."""
from __future__ import annotations

import functools
import getpass
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional


@functools.lru_cache(maxsize=1)
def source_tags() -> dict[str, str]:
    """``mlflow.source.name`` (the command), ``mlflow.source.type``, ``mlflow.user`` and, when the
    code runs from a git checkout, ``mlflow.source.git.commit``."""
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER

    program = Path(sys.argv[0])
    ours = program.name == "sweeper" or (program.name in ("__main__.py", "cli.py") and program.parent.name in ("sweeper", "app"))
    command = " ".join(["sweeper", *sys.argv[1:3]]) if ours else program.name
    tags = {MLFLOW_SOURCE_NAME: command or "sweeper", MLFLOW_SOURCE_TYPE: "LOCAL", MLFLOW_USER: user()}
    commit = git_commit()
    if commit:
        tags[MLFLOW_GIT_COMMIT] = commit
    return tags


def user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 -- no login name in a container: the uid
        return str(os.getuid())


def git_commit(folder: Optional[Path] = None) -> Optional[str]:
    """The commit of the git checkout the project's code runs from (None: not a checkout, or no git)."""
    folder = folder or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None
