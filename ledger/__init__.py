"""The sweep's record in MLflow, owned in one place."""
