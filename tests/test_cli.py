"""The command line as a user meets it: one-line errors, --help everywhere, analyze, config,
db upgrade. Commands run as real child processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream.settings import Settings
from stream.worker_process import settings_env

COMMANDS = ["worker", "publish", "analyze", "history", "topics", "demo", "broker", "db",
            "db upgrade", "db current", "config", "serve"]


def tweetwatch(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("TWEETWATCH_") and k not in ("DATABASE_URL",
                                                             "KAFKA_BOOTSTRAP_SERVERS")}
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], input=stdin,
                          text=True, capture_output=True, env={**base, **(env or {})},
                          timeout=timeout)


def assert_one_line_error(done: subprocess.CompletedProcess[str], status: int,
                          contains: str) -> None:
    assert done.returncode == status, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tweetwatch: error: ")
    assert contains in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    done = tweetwatch(*command.split(), "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: " in done.stdout


@pytest.mark.parametrize(
    ("args", "contains"),
    [
        (["nope"], "No such command 'nope'"),
        (["history"], "Missing argument 'ENTITY'"),
        (["history", "x", "--days", "0"], "Invalid value for '--days'"),
        (["history", "!!!"], "entity must contain letters or digits"),
        (["publish", "/nonexistent/tweets.jsonl"], "No such file or directory"),
        (["publish", "-", "--rate", "-3"], "Invalid value for '--rate'"),
        (["demo", "--tweets", "zero"], "Invalid value for '--tweets'"),
        (["worker", "--loglevel", "loud"], "Invalid value for '--loglevel'"),
        (["train", "--set", "train.task_weights={speed=2}"],
         "a weight >= 0 for each of ner, entity, tweet"),
        (["train", "--set", "train.task_weights={tweet='lots'}"],
         "train.task_weights: expected a number, got 'lots'"),
        (["train", "--set", "train.epoch=3"], "unknown recipe key train.epoch"),
        (["train", "--set", "epochs=3"], "expected SECTION.KEY=VALUE"),
        (["train", "--set", "train.epochs=three"], "train.epochs: expected a whole number"),
        (["train", "--encoders", "idcnn,transformer"], "comma-separated list of idcnn"),
        (["train", "--encoders", "idcnn,bilstm:x"], "each optionally with :SEED"),
        (["train", "--set", "seeds.seed=13", "--encoders", "idcnn,idcnn:13"],
         "a member is listed twice"),
        (["train", "--set", "vectors.embedding_lr_scale=0.5"], "share one frozen word table"),
        (["train", "--set", "network.hidden=95"], "a BiLSTM encoder needs an even width"),
        (["train", "--set", "data.sentiment_dev_topics=1.5"], "a share of the topics in [0, 1)"),
        (["train", "--recipe", "/nonexistent/recipe.toml"], "does not exist"),
    ],
)
def test_bad_arguments_are_one_line(args: list[str], contains: str) -> None:
    assert_one_line_error(tweetwatch(*args), 2, contains)


def test_bad_settings_are_one_line() -> None:
    done = tweetwatch("config", env={"TWEETWATCH_MAX_BATCH": "lots"})
    assert_one_line_error(done, 1, "invalid setting TWEETWATCH_MAX_BATCH")


def test_unreachable_services_are_one_line(tmp_path: Path) -> None:
    missing_db = "postgresql+psycopg://postgres@127.0.0.1:5432/tweetwatch_no_such_db"
    done = tweetwatch("history", "Apple", env={"TWEETWATCH_DATABASE_URL": missing_db})
    assert_one_line_error(done, 1, "cannot read history from")
    done = tweetwatch("publish", "-", stdin="hello\n",
                      env={"TWEETWATCH_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert_one_line_error(done, 1, "cannot publish to 127.0.0.1:1")
    done = tweetwatch("analyze", "-", stdin="hello\n",
                      env={"TWEETWATCH_MODEL_DIR": str(tmp_path / "no-model")})
    assert_one_line_error(done, 1, "model artifact incomplete")


def test_service_and_setting_mistakes_are_one_line(pg_url: str, tmp_path: Path) -> None:
    """The tracebacks users once met, each now one line."""
    missing_db = "postgresql://postgres@127.0.0.1:5432/tweetwatch_no_such_db"
    done = tweetwatch("worker", "--no-migrate", env={"TWEETWATCH_DATABASE_URL": missing_db})
    assert_one_line_error(done, 1, "cannot use the database")
    done = tweetwatch("worker", env={"TWEETWATCH_DATABASE_URL": pg_url,
                                     "TWEETWATCH_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert_one_line_error(done, 1, "cannot reach the Kafka broker at 127.0.0.1:1")
    done = tweetwatch("history", "x", env={"TWEETWATCH_DATABASE_URL": "garbage"})
    assert_one_line_error(done, 1, "invalid setting TWEETWATCH_DATABASE_URL: Value error, not a "
                                   "database URL")
    done = tweetwatch("db", "upgrade", "--revision", "nope",
                      env={"TWEETWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert_one_line_error(done, 1, "Can't locate revision identified by 'nope'")
    done = tweetwatch("history", "x", "--days", "99999999")
    assert_one_line_error(done, 2, "Invalid value for '--days'")


def test_plain_database_urls_are_accepted(tmp_path: Path) -> None:
    """``sqlite:///`` and ``postgres://`` work, as in most tools."""
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    assert tweetwatch("db", "upgrade", env={"TWEETWATCH_DATABASE_URL": url}).returncode == 0
    done = tweetwatch("history", "Apple", "--json", env={"TWEETWATCH_DATABASE_URL": url})
    assert done.returncode == 0 and done.stdout == "", done.stderr
    done = tweetwatch("db", "current", env={
        "TWEETWATCH_DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres"})
    assert done.returncode == 0, done.stderr


def test_config_masks_passwords_and_names_typos() -> None:
    done = tweetwatch("config", env={
        "TWEETWATCH_DATABASE_URL": "postgres://u:hunter2@db/x", "COLUMNS": "250",
        "TWEETWATCH_LLM_BASE_URL": "http://bob:s3cret@llm:8000/v1",
        "TWEETWATCH_ALERT_WINDOWS_S": "60"})
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in done.stdout and "s3cret" not in done.stdout
    assert "postgresql+psycopg://u:***@db/x" in done.stdout
    assert done.stderr.strip() == ("tweetwatch: warning: unknown setting "
                                   "TWEETWATCH_ALERT_WINDOWS_S is ignored; did you mean "
                                   "TWEETWATCH_ALERT_WINDOW_S?")


def test_config_table_covers_every_setting() -> None:
    done = tweetwatch("config", "--markdown")
    assert done.returncode == 0, done.stderr
    for name, info in Settings.model_fields.items():
        assert f"`TWEETWATCH_{name.upper()}`" in done.stdout
        assert (info.description or "").split(".")[0].replace("|", "\\|") in done.stdout


def test_db_upgrade_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    done = tweetwatch("db", "upgrade", env={"TWEETWATCH_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    assert "database at revision 0002" in done.stdout
    done = tweetwatch("db", "current", env={"TWEETWATCH_DATABASE_URL": url})
    assert done.stdout.strip() == "0002"


def test_analyze_json_lines() -> None:
    lines = [
        "Apple and Samsung are being sued again, what a mess",
        json.dumps({"id": "r1", "text": "Going to see Taylor Swift in London tonight!"}),
        json.dumps({"id": "r2"}),
        "",
        "I can't stand @united anymore, lost my bag AGAIN",
    ]
    done = tweetwatch("analyze", "--json", "-", stdin="\n".join(lines) + "\n")
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == 4  # the blank line is skipped
    assert results[1]["id"] == "r1"
    assert results[2] == {"id": None, "line": 3, "error": "missing field 'text'"}
    for result in (results[0], results[1], results[3]):
        assert result["sentiment"] in ("negative", "neutral", "positive")
        assert abs(sum(result["probs"].values()) - 1) < 1e-3
        for entity in result["entities"]:
            assert set(entity) >= {"entity", "entity_key", "type", "sentiment", "score"}
            assert result["text"][entity["start"]:entity["end"]] == entity["entity"]
    assert any(r.get("entities") for r in results), "no entity found in any of the tweets"
    table = tweetwatch("analyze", "-", stdin="\n".join(lines) + "\n", env={"COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    assert "missing field 'text'" in table.stdout


def test_topics_command(topic_settings: Settings) -> None:
    """`tweetwatch topics` leaves existing topics alone; on the embedded broker (no
    CreateTopics) a missing topic is a one-line error, on real Kafka it is created."""
    env = settings_env(topic_settings)
    done = tweetwatch("topics", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:4] == [f"{name}: exists" for name in (
        topic_settings.topic_tweets, topic_settings.topic_dlq, topic_settings.topic_negative,
        topic_settings.topic_alerts)]
    fresh = f"{topic_settings.topic_tweets}-fresh"
    done = tweetwatch("topics", env={**env, "TWEETWATCH_TOPIC_TWEETS": fresh})
    if done.returncode == 0:  # a real broker (KAFKA_BOOTSTRAP_SERVERS)
        assert f"{fresh}: created" in done.stdout
    else:
        assert_one_line_error(done, 1, "cannot create topics")


@pytest.mark.slow
def test_demo_runs_end_to_end() -> None:
    """`tweetwatch demo` on nothing but this machine: broker, SQLite store, worker, replay."""
    done = tweetwatch("demo", "--tweets", "400", env={"COLUMNS": "160"}, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "embedded Kafka-protocol broker on 127.0.0.1:" in out
    assert "done in" in out and "400 tweets stored, 0 rejected to the DLQ" in out
    negatives = int(out.split("rejected to the DLQ, ")[1].split(" negative")[0])
    assert negatives > 0
    assert out.count("negative ") >= min(negatives, 25)
    assert "watching 29 entities from" in out  # the demo's own watchlist
    assert "reputation history: most-mentioned watched entities" in out
    assert "tweetwatch history '" in out
    assert "tweetwatch serve, then open http://localhost:8080/" in out


@pytest.mark.slow
def test_eval_prints_the_test_table_of_the_committed_artifact() -> None:
    """`tweetwatch eval` scores the committed ONNX models on every test set and prints the
    table the README shows, span F1 without types and the type confusions included; it leaves
    the card alone unless asked."""
    model_dir = Settings().model_dir
    card = (model_dir / "model_card.json").read_text()
    env = {"TWEETWATCH_DATA_DIR": str(Settings().data_dir)}
    proc = tweetwatch("eval", "--no-speed", "--model-dir", str(model_dir), env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line
            for line in proc.stdout.splitlines() if line.startswith("| ")}
    assert rows[("test set", "metric")].rstrip().endswith("| fp32 | int8 |")
    f1 = float(rows[("WNUT16 test", "entity micro F1")].split("|")[3])
    span = float(rows[("WNUT16 test", "span F1, types ignored")].split("|")[3])
    assert 0 < f1 <= span <= 100  # typing can only lose spans
    assert ("SemEval-2017 4A test", "macro recall") in rows
    per_class = rows[("SemEval-2017 4A test", "recall negative / neutral / positive")]
    recalls = [float(r) for r in per_class.split("|")[3].split("/")]
    macro = float(rows[("SemEval-2017 4A test", "macro recall")].split("|")[3])
    assert sum(recalls) / 3 == pytest.approx(macro, abs=1e-3)
    assert "WNUT16 test (fp32), spans found with the wrong type (gold -> predicted):" in proc.stdout
    assert (model_dir / "model_card.json").read_text() == card


def test_publish_skips_a_line_too_large_and_goes_on(topic_settings: Settings) -> None:
    lines = ["Delta lost my bag", json.dumps({"id": "big", "text": "x" * 1_200_000}),
             "United was fine today"]
    done = tweetwatch("publish", "-", stdin="\n".join(lines) + "\n",
                      env=settings_env(topic_settings))
    assert done.returncode == 1, done.stderr
    assert "tweetwatch: line 2 not sent:" in done.stderr
    assert "published 2 messages" in done.stderr and "1 lines skipped" in done.stderr
    assert "Traceback" not in done.stderr


def test_configuration_page_is_the_generated_table() -> None:
    """docs/configuration.md carries `tweetwatch config --markdown` verbatim."""
    done = tweetwatch("config", "--markdown")
    page = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    assert done.stdout.strip() in page
