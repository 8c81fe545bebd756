"""YAML sweep files to a validated, closed :class:`~sweeper.spec.config.SweepConfig`."""
