"""The command line's shape: help on every command, the log file for cron, quiet success."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import Fake, cli

COMMANDS = ["run", "demo", "views", "export", "report", "fake-api"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_useful_help(command: str) -> None:
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.stdout and len(result.stdout.split()) > 20


def test_run_help_lists_the_contract_options_and_exit_codes() -> None:
    text = " ".join(cli("run", "--help").stdout.split())
    for option in (
        "--destination",
        "--model-id",
        "--page-size",
        "--concurrency",
        "--requests-per-minute",
        "--lookback",
        "--log-file",
    ):
        assert option in text
    assert "4 another run holds the warehouse lock" in text


def test_run_is_quiet_on_success_and_logs_every_outcome(fake: Fake, workdir: Path) -> None:
    log = workdir / "logs" / "run.log"
    log.parent.mkdir()
    ok = cli("run", "--log-file", str(log))
    assert ok.exit_code == 0
    assert ok.stderr == "" and len(ok.stdout.strip().splitlines()) == 1
    refused = cli("run", "--log-file", str(log), env={"CO_API_KEY": "not-the-key"})
    assert refused.exit_code == 3
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    assert " exit=0 loaded 25 models" in lines[0]
    assert " exit=3 error: the API refused the key" in lines[1]
    assert "not-the-key" not in log.read_text()


def test_dlt_telemetry_is_off_unless_the_user_opts_in() -> None:
    import dlt
    from dlt.common.configuration.specs import RuntimeConfiguration

    import pipelines  # noqa: F401  (sets the default before dlt resolves its runtime configuration)

    assert dlt.config.get("runtime.dlthub_telemetry", bool) is False
    assert RuntimeConfiguration().dlthub_telemetry is True  # dlt's own default, which the package overrides
