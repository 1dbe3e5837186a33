"""The `socialpulse` command line, at the top of the dependency graph: it may import every package
(``socialpulse``, ``assets``, ``orchestration``, ``bench``); nothing imports it. Commands are click wiring
only: they parse options, call domain functions and print what those return. Heavy imports (torch,
dagster, deltalake) happen inside the commands, so ``socialpulse --help`` stays fast.
"""

import os

from socialpulse.runtime import OFFLINE_DEFAULTS

# offline defaults for every command (set before any command imports transformers, dbt, GX or Spark)
for _k, _v in OFFLINE_DEFAULTS.items():
    os.environ.setdefault(_k, _v)
