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


def test_bad_demo_and_fake_api_numbers_are_one_line_and_exit_2(workdir: Path) -> None:
    import socket

    for args, message in (
        (["demo", "--models", "0"], "error: --models must be at least 1, not 0"),
        (["demo", "--models", "-5"], "error: --models must be at least 1, not -5"),
        (["fake-api", "--port", "99999"], "error: --port must be 0 to 65535, not 99999"),
    ):
        done = cli(*args)
        assert (done.exit_code, done.stderr.strip()) == (2, message)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("fake-api", "--port", str(port))
    assert done.exit_code == 2
    assert done.stderr.strip().splitlines() == [f"error: cannot serve on 127.0.0.1:{port}: Address already in use"]


def test_an_unknown_destination_is_one_line_naming_the_ones_to_use(fake: Fake, workdir: Path) -> None:
    for command in (["run"], ["views"]):
        done = cli(*command, "--destination", "nosuchdest")
        assert done.exit_code == 2
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("error: unknown destination 'nosuchdest': use duckdb") and "postgres" in line
    assert "filesystem" not in " ".join(cli("run", "--help").stdout.split())  # run refuses it, so help never offers it
    assert not (workdir / "cohere_events.duckdb").exists()


def test_views_without_a_warehouse_says_so_and_makes_none(workdir: Path) -> None:
    done = cli("views")
    assert done.exit_code == 2
    assert "no warehouse at" in done.stderr and "(the default, in this folder)" in done.stderr
    assert not (workdir / "cohere_events.duckdb").exists()


def test_no_warehouse_names_where_its_path_came_from(workdir: Path) -> None:
    elsewhere = workdir / "elsewhere.duckdb"
    done = cli("report", env={"DESTINATION__DUCKDB__CREDENTIALS": str(elsewhere)})
    assert done.exit_code == 2
    assert f"no warehouse at {elsewhere} (from DESTINATION__DUCKDB__CREDENTIALS)" in done.stderr
    assert "here first" not in done.stderr


def test_help_texts_say_what_they_mean() -> None:
    export = " ".join(cli("export", "--help").stdout.replace("│", " ").split())
    assert "export [OPTIONS] DIRECTORY" in export and "{" not in export
    assert "to export (default: all of them)" in export
    for command, words in (("check", "Whose fine-tunes to check"), ("fake-api", "Whose API to simulate")):
        text = " ".join(cli(command, "--help").stdout.replace("│", " ").split())
        assert words in text and "dataset" not in text.split("--provider")[1].split("--")[0]


def test_counts_of_one_are_singular(fake: Fake, workdir: Path) -> None:
    from pipelines.words import plural

    assert (plural(1, "request"), plural(2, "request"), plural(1, "retry", "retries")) == (
        "1 request",
        "2 requests",
        "1 retry",
    )
    assert cli("run").exit_code == 0
    again = cli("run", "--model-id", next(iter(fake.world.models)))
    assert again.exit_code == 0 and "loaded 1 model," in again.stdout and "fetched 1 model," in again.stdout
