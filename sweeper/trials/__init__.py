"""Training a plan on Ray: the executor (driver), the relay to the ledger, one trial, ASHA.

Imported by Ray workers: nothing here may import MLflow or pydantic at module level.
"""
