"""The code MLflow runs to build the champion model (models from code): see :mod:`ledger.champion`."""
from mlflow.models import set_model

from ledger.champion import ChampionModel

set_model(ChampionModel())
