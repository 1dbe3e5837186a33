"""The Dagster resources reach the real stores they stand for."""

import pytest

from orchestration.resources import build_resources

pytestmark = pytest.mark.integration


def test_resources_reach_every_store(stack):
    res = build_resources(stack)
    assert res["lake"].table_uri("bronze", "posts") == stack.table_uri("bronze", "posts")
    with res["postgres"].connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert res["redis"].client().ping()
    assert res["spark"].session().sql("SELECT 1 AS one").collect()[0]["one"] == 1


def test_mlflow_resource_tracks_and_registers(stack):
    import mlflow

    res = build_resources(stack)["mlflow"]
    assert res.ping()
    client = res.client()
    exp = client.create_experiment("resource-smoke")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "macro_f1", 0.5)
    assert client.get_run(run.info.run_id).data.metrics["macro_f1"] == 0.5
    client.create_registered_model("resource-smoke-model")
    assert mlflow.MlflowClient(stack.mlflow).get_registered_model("resource-smoke-model").name == "resource-smoke-model"
