"""``tweetwatch train`` and ``tweetwatch eval``.

Importing this module must stay cheap and torch-free (the runtime CLI imports it to register
the commands); torch and gensim are imported only when training actually runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from stream.inference import MODEL_CARD, read_model_card
from stream.settings import get_settings


def _ner_rows(corpus: str, title: str) -> tuple:
    """Micro F1, precision / recall and untyped span F1 of one NER test set."""
    return (
        (f"{title} test", "entity micro F1", lambda m: m[corpus]["f1"]),
        (f"{title} test", "precision / recall",
         lambda m: f"{m[corpus]['precision']} / {m[corpus]['recall']}"),
        (f"{title} test", "span F1, types ignored", lambda m: m[corpus]["span_f1"]),
    )


EVAL_ROWS = (
    *_ner_rows("wnut16", "WNUT16"),
    *_ner_rows("wnut17", "WNUT17"),
    ("BTC test", "entity micro F1", lambda m: m["btc"]["f1"]),
    ("SemEval-2017 4A test", "macro recall", lambda m: m["semeval2017_4a"]["macro_recall"]),
    ("SemEval-2017 4A test", "macro F1", lambda m: m["semeval2017_4a"]["macro_f1"]),
    ("SemEval-2017 4A test", "accuracy", lambda m: m["semeval2017_4a"]["accuracy"]),
    ("SemEval-2017 4A test", "recall negative / neutral / positive",
     lambda m: " / ".join(str(r) for r in m["semeval2017_4a"].get("recall_per_class", {})
                          .values()) or "-"),
    ("SemEval-2017 4A test", "precision negative / neutral / positive",
     lambda m: " / ".join(str(r) for r in m["semeval2017_4a"].get("precision_per_class", {})
                          .values()) or "-"),
    ("Mitchell 2013 test", "span+polarity F1", lambda m: m["mitchell2013"]["f1"]),
    ("Mitchell 2013 test", "span F1", lambda m: m["mitchell2013"]["span_f1"]),
    ("SemEval-2017 topic test", "macro recall", lambda m: m["semeval2017_topic"]["macro_recall"]),
    *(("TMSC test (Twitter-2015 + 2017)", f"{label} accuracy / macro F1",
       lambda m, part=part: _tmsc(m, part)) for label, part in (
        ("entity sentiment:", "entity"),
        ("baseline, tweet sentiment as the entity's:", "tweet_baseline"))),
    *(("TMSC test, tweets with targets of different polarities",
       f"{label} accuracy / macro F1", lambda m, part=part: _tmsc(m, part, "mixed"))
      for label, part in (("entity sentiment:", "entity"),
                          ("baseline, tweet sentiment:", "tweet_baseline"))),
)


def _tmsc(metrics: dict, part: str, subset: str | None = None) -> str:
    """TMSC accuracy / macro-F1 of one predictor (cards written before TMSC, or before its
    mixed-polarity subset, show "-")."""
    scores = metrics.get("tmsc", {})
    found = (scores.get(subset) or {}).get(part) if subset else scores.get(part)
    return f"{found['accuracy']} / {found['macro_f1']}" if found else "-"



def format_table(metrics: dict, folds: list[int]) -> str:
    """The evaluation table (markdown) for the fp32 and int8 models, per-type rows included."""
    variants = list(metrics)
    lines = [
        "| test set | metric | " + " | ".join(variants) + " |",
        "|---|---|" + "---|" * len(variants),
    ]
    for name, metric, get in EVAL_ROWS:
        label = name if "Mitchell" not in name else f"{name} (folds {folds})"
        values = " | ".join(f"{get(metrics[v])}" for v in variants)
        lines.append(f"| {label} | {metric} | {values} |")
    for corpus, title in (("wnut16", "WNUT16"), ("wnut17", "WNUT17")):
        for kind in metrics[variants[0]][corpus]["per_type"]:
            values = " | ".join(f"{metrics[v][corpus]['per_type'].get(kind, 0.0)}"
                                for v in variants)
            lines.append(f"| {title} test | F1 {kind} | {values} |")
    for corpus, title in (("wnut16", "WNUT16"), ("wnut17", "WNUT17")):
        confusions = metrics[variants[0]][corpus]["type_confusions"]
        if confusions:
            top = ", ".join(f"{pair} {n}" for pair, n in list(confusions.items())[:6])
            lines.append(f"\n{title} test ({variants[0]}), spans found with the wrong type "
                         f"(gold -> predicted): {top}")
    return "\n".join(lines)


def format_speed(speeds: dict) -> str:
    """Tweets/s per variant and batch size (markdown)."""
    sizes = list(next(iter(speeds.values())))
    lines = ["| variant | " + " | ".join(f"batch {s}" for s in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    lines += [f"| {v} | " + " | ".join(str(speeds[v][s]) for s in sizes) + " |" for v in speeds]
    return "tweets/s, Analyzer.analyze, 1 intra-op thread:\n" + "\n".join(lines)


def parse_encoders(_ctx: click.Context, _param: click.Parameter,
                   value: str | None) -> tuple[str, ...] | None:
    """``"idcnn,bilstm:14"`` -> ``("idcnn", "bilstm:14")``; None when not given."""
    if value is None:
        return None
    from model_export.model import ENCODERS
    from model_export.recipe import member_spec

    encoders = tuple(part.strip() for part in value.split(",") if part.strip())
    try:
        for entry in encoders:
            member_spec(entry)
    except ValueError:
        encoders = ()
    if not encoders:
        raise click.BadParameter(f"{value!r}: expected a comma-separated list of "
                                 f"{', '.join(ENCODERS)}, each optionally with :SEED")
    return encoders


@click.command("train")
@click.option("--recipe", "recipe_path", type=click.Path(path_type=Path, dir_okay=False,
                                                          exists=True),
              default=None, help="Recipe file (TOML; default: the shipped recipe, "
              "model_export/recipe.toml).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one recipe value, as a TOML value (repeatable), e.g. "
              "--set train.epochs=3 --set 'data.train_with_dev=[]'.")
@click.option("--encoders", default=None, callback=parse_encoders, metavar="LIST",
              help="Shorthand for --set network.encoders: one network per entry, served as "
              "the mean of their outputs (comma-separated: idcnn = dilated convolutions, "
              "bilstm, idcnn-bilstm = the BiLSTM after the convolutions; NAME:SEED trains "
              "that member with its own seed, e.g. idcnn,idcnn:14; one name: a single "
              "network).")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Data folder (default: the data_dir setting, ../shared/data).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Artifact folder to write (default: the model_dir setting).")
@click.option("--work-dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("runs"), show_default=True,
              help="Scratch folder (cached word vectors, training log).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Examples per training set (smoke runs).")
@click.option("--time-budget-min", type=click.FloatRange(min=0), default=None,
              help="Stop after the epoch that passes this many minutes.")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Ensemble members trained at once, each in its own process with --threads "
              "torch threads (the weights do not depend on it).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch intra-op threads; the small model gains little from more, and on a "
              "shared machine extra OpenMP threads thrash (10x slower measured here).")
def train_command(recipe_path: Path | None, overrides: tuple[str, ...],
                  encoders: tuple[str, ...] | None, data_dir: Path | None,
                  out_dir: Path | None, work_dir: Path, limit: int | None,
                  time_budget_min: float | None, jobs: int, threads: int) -> None:
    """Train the joint NER + sentiment model from a recipe and write the ONNX artifact with
    its card (the recipe's values land in the card's train_config)."""
    from model_export.recipe import DEFAULT_RECIPE, parse_override, recipe_config

    settings = get_settings()
    try:
        changes = dict(parse_override(text) for text in overrides)
        if encoders is not None:
            changes["network.encoders"] = list(encoders)
        config = recipe_config(
            data_dir or settings.data_dir, recipe=recipe_path or DEFAULT_RECIPE,
            overrides=changes, work_dir=work_dir, limit=limit,
            time_budget_s=None if time_budget_min is None else 60 * time_budget_min)
        if config.teacher:
            from model_export.distill import check_teacher

            check_teacher(Path(config.teacher))
    except (ValueError, FileNotFoundError) as err:
        raise click.UsageError(str(err)) from None

    import torch

    from model_export.artifact import write_artifact
    from model_export.train import train_ensemble

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    result = train_ensemble(config, jobs=jobs)
    card = write_artifact(result, config, out_dir or settings.model_dir)
    epochs = ", ".join(f"{m.encoder}:{m.seed} {len(m.history)}" for m in result.members)
    click.echo(f"trained in {result.wall_s / 60:.1f} min (epochs: {epochs}); dev objective "
               f"of the served model {result.dev_objective}")
    click.echo(format_table(card["metrics"], card["mitchell_folds_evaluated"]))
    click.echo(format_speed(card["throughput_tweets_per_s"]))


@click.command("eval")
@click.option("--model-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Artifact folder (default: the model_dir setting).")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Data folder (default: the data_dir setting).")
@click.option("--write-card/--no-write-card", default=False, show_default=True,
              help="Store the figures in the folder's model_card.json.")
@click.option("--speed/--no-speed", default=True, show_default=True,
              help="Also measure tweets/s of Analyzer.analyze (1 intra-op thread).")
def eval_command(model_dir: Path | None, data_dir: Path | None, write_card: bool,
                 speed: bool) -> None:
    """Score the fp32 and int8 ONNX models on the public test sets (runtime decoding)."""
    from model_export.evaluate import test_metrics, throughput

    settings = get_settings()
    model_dir = model_dir or settings.model_dir
    data_dir = data_dir or settings.data_dir
    card = read_model_card(model_dir)
    folds = card.get("mitchell_folds_evaluated") or card.get("train_config", {}).get(
        "mitchell_folds", [1])
    metrics = test_metrics(model_dir, data_dir, folds)
    click.echo(format_table(metrics, folds))
    speeds = throughput(model_dir, data_dir) if speed else None
    if speeds:
        click.echo(format_speed(speeds))
    if write_card:
        card["metrics"] = metrics
        if speeds:
            card["throughput_tweets_per_s"] = speeds
        card["mitchell_folds_evaluated"] = folds
        card_path = model_dir / MODEL_CARD
        card_path.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
        click.echo(f"wrote {card_path}")
