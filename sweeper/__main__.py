"""``python -m sweeper``: the ``sweeper`` command."""
from sweeper.app.cli import main

raise SystemExit(main())
