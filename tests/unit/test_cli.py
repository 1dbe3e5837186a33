"""The command line (cli/): every command and option explains itself in --help, and --help stays fast (no
torch, Dagster, Delta or Spark imported just to list the commands)."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from cli.main import main


def _commands(cmd: click.Command, path: tuple[str, ...] = ("socialpulse",)):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))


def test_every_command_and_option_explains_itself():
    commands = dict(_commands(main))
    assert {"load", "moderation", "search", "trends", "bench", "demo"} <= {p[1] for p in commands if len(p) > 1}
    silent = [" ".join(p) for p, c in commands.items() if not (c.help or "").strip()]
    bare = [f"{' '.join(p)} {o.opts[0]}" for p, c in commands.items() for o in c.params
            if isinstance(o, click.Option) and not o.help and o.name != "help"]
    assert silent == [] and bare == []
    for path in commands:
        r = CliRunner().invoke(main, [*path[1:], "--help"])
        assert r.exit_code == 0 and "Usage: " in r.output, (path, r.output)


def test_help_does_not_import_the_heavy_stacks():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom cli.main import main\n"
            "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'dagster', 'deltalake', 'pyspark', "
            "'transformers', 'mlflow'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_a_results_file_describes_the_machine_after_any_bench_module_is_imported():
    """Each bench writes its results with ``bench.machine()``; importing the ``bench.platform`` submodule
    (the feed and soak benches do) once rebound the stdlib ``platform`` name in the package, and every
    results file then failed to be written at the end of the run."""
    import importlib

    import bench

    importlib.import_module("bench.platform")
    importlib.import_module("bench.feed")
    described = bench.machine()
    assert set(described) == {"cpus", "platform", "python", "memory_gb"}
    assert described["python"] == ".".join(map(str, sys.version_info[:3]))
    assert described["platform"].startswith("Linux")
