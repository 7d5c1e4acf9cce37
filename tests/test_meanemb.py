"""The "add a model" example: one file under seqrec/models/ plus a preset entry, trained by the shared loop."""

import mlflow
import torch

from seqrec.data.dataset import ProcessedDataset
from seqrec.models.meanemb import MeanEmb, MeanEmbConfig
from seqrec.workflow.neural import run_neural


def test_state_is_the_mean_embedding_of_the_clicks():
    model = MeanEmb(5, MeanEmbConfig(max_len=4, hidden=3))
    inputs = torch.tensor([[0, 0, 2, 4], [0, 0, 0, 5]])
    weight = model.item_emb.weight
    torch.testing.assert_close(model.session_states(inputs), torch.stack([(weight[2] + weight[4]) / 2, weight[5]]))


def test_trains_through_run_neural_and_beats_random(processed, tmp_path, monkeypatch):
    monkeypatch.setattr("seqrec.workflow.neural.CHECKPOINT_ROOT", tmp_path)
    run_id, metrics = run_neural("meanemb", str(processed), "tiny", {"progress": False, "epochs": 2})
    random_recall = 20 / ProcessedDataset.load(processed).n_items
    assert metrics["test_recall_at_20"] > 4 * random_recall
    assert mlflow.get_run(run_id).data.params["model.hidden"] == "16"
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")  # rebuilt from recommender.json
    assert len(model.predict({"session": [ProcessedDataset.load(processed).raw_ids[1]], "k": 5})["items"][0]) == 5
