"""The `socialpulse` command line, at the top of the dependency graph: it may import every package
(``socialpulse``, ``assets``, ``orchestration``, ``bench``); nothing imports it. Commands are click wiring
only: they parse options, call domain functions and print what those return. Heavy imports (torch,
dagster, deltalake) happen inside the commands, so ``socialpulse --help`` stays fast.
"""

import os

# offline defaults for every command (set before any command imports transformers, dbt, GX or Spark)
for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "SPARK_LOCAL_IP": "127.0.0.1",
    "DAGSTER_DISABLE_TELEMETRY": "1",
}.items():
    os.environ.setdefault(_k, _v)
