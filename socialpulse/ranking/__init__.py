"""The For You feed's ranking core: pure functions and the ranker model, shared by the assets that train
it, the serving tier that scores with it and the CLI that evaluates it on any interaction log.

Nothing here imports Dagster, Delta or Spark (serving imports this package)."""
