"""The code MLflow logs as the seqrec model (models from code): the state comes from its artifact."""

import mlflow

from seqrec.serving.pyfunc import SeqrecPyfunc

mlflow.models.set_model(SeqrecPyfunc())
