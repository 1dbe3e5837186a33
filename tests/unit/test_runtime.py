"""Process set-up: the Prometheus folder that Feast needs outlives the process that made it."""

from __future__ import annotations

import os
import subprocess
import sys

from socialpulse.runtime import PROMETHEUS_VARS, metrics_dir, prepare_process, prune_metrics_dir


def test_a_folder_borrowed_from_feast_or_gone_is_replaced_by_the_state_folder(local_settings, tmp_path):
    gone = tmp_path / "feast_metrics_abc123"  # what an earlier process's Feast import left in the environment
    for inherited in ({PROMETHEUS_VARS[0]: str(gone)}, {PROMETHEUS_VARS[0]: str(tmp_path / "deleted")}, {}):
        env = prepare_process(local_settings, dict(inherited))
        assert env[PROMETHEUS_VARS[0]] == env[PROMETHEUS_VARS[1]] == str(metrics_dir(local_settings))
        assert metrics_dir(local_settings).is_dir()
        assert env["HF_HUB_OFFLINE"] == "1"


def test_an_operators_own_folder_is_kept(local_settings, tmp_path):
    own = tmp_path / "prom"
    own.mkdir()
    env = prepare_process(local_settings, {PROMETHEUS_VARS[0]: str(own)})
    assert env[PROMETHEUS_VARS[0]] == env[PROMETHEUS_VARS[1]] == str(own)


def test_files_of_exited_processes_are_pruned(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for kind in ("counter", "gauge_liveall", "histogram"):
        (tmp_path / f"{kind}_{dead.pid}.db").write_bytes(b"x")
        (tmp_path / f"{kind}_{os.getpid()}.db").write_bytes(b"x")
    assert prune_metrics_dir(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{k}_{os.getpid()}.db" for k in ("counter", "gauge_liveall", "histogram"))


def test_feast_imports_in_a_child_after_its_parent_exited(local_settings, tmp_path):
    """The bug this guards: a parent imports Feast (which points the variable at its own temporary folder and
    deletes it at exit); a process started later inherits the variable. With the set-up, the child works."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")}
    parent = subprocess.run([sys.executable, "-c", "import feast.metrics, os; print(os.environ['PROMETHEUS_MULTIPROCESS_DIR'])"],
                            env=env, capture_output=True, text=True, check=True)
    borrowed = parent.stdout.strip()
    assert "feast_metrics_" in borrowed and not os.path.exists(borrowed)  # gone with its process
    child_env = prepare_process(local_settings, {**env, PROMETHEUS_VARS[0]: borrowed, PROMETHEUS_VARS[1]: borrowed})
    child = subprocess.run([sys.executable, "-c", "import feast.metrics; feast.metrics.cpu_usage_gauge.set(1)"],
                           env=child_env, capture_output=True, text=True)
    assert child.returncode == 0, child.stderr[-500:]
