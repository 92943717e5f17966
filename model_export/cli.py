"""``tweetwatch train`` and ``tweetwatch eval``.

Importing this module must stay cheap and torch-free (the runtime CLI imports it to register
the commands); torch and gensim are imported only when training actually runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

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
    ("Mitchell 2013 test", "span+polarity F1", lambda m: m["mitchell2013"]["f1"]),
    ("Mitchell 2013 test", "span F1", lambda m: m["mitchell2013"]["span_f1"]),
    ("SemEval-2017 topic test", "macro recall", lambda m: m["semeval2017_topic"]["macro_recall"]),
    *(("TMSC test (Twitter-2015 + 2017)", f"{label} accuracy / macro F1",
       lambda m, part=part: _tmsc(m, part)) for label, part in (
        ("entity sentiment:", "entity"),
        ("baseline, tweet sentiment as the entity's:", "tweet_baseline"))),
)


def _tmsc(metrics: dict, part: str) -> str:
    """TMSC accuracy / macro-F1 of one predictor (cards written before TMSC show "-")."""
    found = metrics.get("tmsc", {}).get(part)
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


TASKS = ("ner", "entity", "tweet")


def parse_task_weights(_ctx: click.Context, _param: click.Parameter,
                       pairs: tuple[str, ...]) -> dict[str, float] | None:
    """``("tweet=1.5",)`` -> all three task weights (unnamed ones 1); None when none given."""
    if not pairs:
        return None
    weights = dict.fromkeys(TASKS, 1.0)
    for pair in pairs:
        task, sep, value = pair.partition("=")
        if not sep or task not in TASKS:
            raise click.BadParameter(f"{pair!r}: expected TASK=W with TASK one of "
                                     f"{', '.join(TASKS)}")
        try:
            weights[task] = float(value)
        except ValueError:
            raise click.BadParameter(f"{pair!r}: {value!r} is not a number") from None
        if weights[task] < 0:
            raise click.BadParameter(f"{pair!r}: a weight cannot be negative")
    return weights


def parse_encoders(_ctx: click.Context, _param: click.Parameter,
                   value: str | None) -> tuple[str, ...] | None:
    """``"idcnn,bilstm:14"`` -> ``("idcnn", "bilstm:14")``; None when not given."""
    if value is None:
        return None
    from model_export.model import ENCODERS
    from model_export.train import member_spec

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
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Data folder (default: the data_dir setting, ../shared/data).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Artifact folder to write (default: the model_dir setting).")
@click.option("--work-dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("runs"), show_default=True,
              help="Scratch folder (cached word vectors, training log).")
@click.option("--epochs", type=int, default=16, show_default=True, help="Most epochs.")
@click.option("--patience", type=int, default=4, show_default=True,
              help="Epochs without dev improvement before stopping.")
@click.option("--seed", type=int, default=15, show_default=True, help="Seed of the network.")
@click.option("--embedding-seed", type=int, default=15, show_default=True,
              help="Seed of the FastText vectors.")
@click.option("--limit", type=int, default=None, help="Examples per training set (smoke runs).")
@click.option("--time-budget-min", type=float, default=None,
              help="Stop after the epoch that passes this many minutes.")
@click.option("--embedding-epochs", type=int, default=20, show_default=True,
              help="FastText passes over the unlabeled and training tweets.")
@click.option("--hidden", type=int, default=96, show_default=True, help="Encoder width.")
@click.option("--encoders", default=None, callback=parse_encoders, metavar="LIST",
              help="One network per encoder, served as the mean of their outputs "
              "(comma-separated: idcnn = dilated convolutions, bilstm, idcnn-bilstm = the "
              "BiLSTM after the convolutions; NAME:SEED trains that member with its own "
              "seed instead of --seed, e.g. idcnn,idcnn:14; default idcnn,bilstm,idcnn-bilstm; "
              "one name: a single network).")
@click.option("--char-filters", type=int, default=16, show_default=True,
              help="Char-CNN filters.")
@click.option("--char-dim", type=int, default=8, show_default=True,
              help="Character embedding size.")
@click.option("--embedding-lr-scale", type=float, default=None,
              help="Learning-rate factor of the word embeddings (default 0: frozen).")
@click.option("--hashtag-prob", type=float, default=None,
              help="Probability of rewriting a WNUT16 training mention as one hashtag.")
@click.option("--entity-word-dropout", type=float, default=None,
              help="Probability that a token of a labelled entity is read as an unknown word "
              "in training (default 0; on top of the 0.05 word dropout of every token).")
@click.option("--transfer-weight", type=float, default=None,
              help="Weight of BTC's partial labels for the WNUT16/WNUT17 heads "
              "(default 0.5; 0: off).")
@click.option("--bow-dim", type=int, default=None,
              help="Width of the tweet head's own bag-of-words table (default 16; 0: the bag "
              "averages the shared word vectors).")
@click.option("--bow-from-vectors/--bow-own-table", default=None,
              help="Learn the tweet head's bag-of-words table as a projection of the frozen "
              "word vectors plus a per-word residual started at zero, folded into one table "
              "for export (default; --bow-own-table: a table of its own, randomly "
              "started).")
@click.option("--max-words", type=int, default=None,
              help="Vocabulary size (default 60000; above 30000 the big tables are stored fp16).")
@click.option("--train-with-dev", multiple=True, default=None, metavar="NAME[:SHARE]",
              help="NER corpus (wnut16, wnut17, btc) whose dev split joins its training data, "
              "or SHARE of it, chosen by a hash of each text, with the rest kept for early "
              "stopping and calibration (repeatable; default: wnut16 and wnut17:0.5; 'none' "
              "keeps every dev split for scoring).")
@click.option("--dev-repeat", type=click.IntRange(min=1), default=None,
              help="Passes over each dev tweet that trains (--train-with-dev) per pass over "
              "its corpus's training split (default 3; 1: the recipe before session 16).")
@click.option("--entity-tweet/--no-entity-tweet", default=None,
              help="Entity-sentiment head also reads the tweet head's hidden layer "
              "(default: on).")
@click.option("--entity-detach-pooled/--no-entity-detach-pooled", default=None,
              help="Entity-sentiment head reads a detached copy of the pooled tweet states "
              "(default: on).")
@click.option("--task-weight", "task_weight", multiple=True, metavar="TASK=W",
              callback=parse_task_weights,
              help="Loss weight of a task: ner, entity or tweet (repeatable; default 1 each).")
@click.option("--sentiment-per-epoch", type=int, default=None,
              help="SemEval-4A tweets drawn per epoch (default 24000).")
@click.option("--tweet-prior-correction/--no-tweet-prior-correction", default=None,
              help="After training, correct the tweet head for the training class prior by "
              "the amount that maximises macro recall on the 4A dev split (default: on).")
@click.option("--tweet-class-power", type=float, default=None,
              help="Power of the inverse-frequency class weights of the tweet loss "
              "(default 0.5; 1: balanced classes).")
@click.option("--anonymise-handles/--keep-handles", default=None,
              help="Write the @handles of the SemEval-4A training tweets as @user, as TweetEval "
              "did for the val and test tweets (default: on).")
@click.option("--strip-urls/--keep-urls", default=None,
              help="Drop the URLs of the SemEval-4A training tweets, as TweetEval did for the "
              "val and test tweets (default: keep).")
@click.option("--sentiment-dev-topics", type=float, default=None, metavar="SHARE",
              help="Hold this share of the SemEval-2016 topics out of training and score "
              "their 4A tweets, not TweetEval val, as the 4A dev split (dev objective and "
              "prior correction; default 0.2; 0: val).")
@click.option("--context-per-epoch", type=click.IntRange(min=0), default=None, metavar="N",
              help="Unlabeled tweets per epoch for masked-word prediction: a share of each "
              "tweet's words is hidden and the encoder must point at their word vectors "
              "(default 0: off).")
@click.option("--context-weight", type=click.FloatRange(min=0), default=None,
              help="Loss weight of the masked-word task (default 1).")
@click.option("--context-mask", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=None, help="Share of each unlabeled tweet's words hidden (default 0.15).")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Ensemble members trained at once, each in its own process with --threads "
              "torch threads (the weights do not depend on it).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="torch intra-op threads; the small model gains little from more, and on a "
              "shared machine extra OpenMP threads thrash (10x slower measured here).")
def train_command(data_dir: Path | None, out_dir: Path | None, work_dir: Path, epochs: int,
                  patience: int, seed: int, embedding_seed: int, limit: int | None,
                  time_budget_min: float | None,
                  embedding_epochs: int, hidden: int, char_filters: int, char_dim: int,
                  embedding_lr_scale: float | None, hashtag_prob: float | None,
                  entity_word_dropout: float | None, transfer_weight: float | None,
                  bow_dim: int | None, bow_from_vectors: bool | None,
                  max_words: int | None,
                  train_with_dev: tuple[str, ...] | None, dev_repeat: int | None,
                  entity_tweet: bool | None, entity_detach_pooled: bool | None,
                  task_weight: dict[str, float] | None, sentiment_per_epoch: int | None,
                  tweet_prior_correction: bool | None, tweet_class_power: float | None,
                  anonymise_handles: bool | None, strip_urls: bool | None,
                  sentiment_dev_topics: float | None, context_per_epoch: int | None,
                  context_weight: float | None, context_mask: float | None,
                  encoders: tuple[str, ...] | None, jobs: int, threads: int) -> None:
    """Train the joint NER + sentiment model and write the ONNX artifact with its card."""
    import torch

    from model_export.artifact import write_artifact
    from model_export.train import TrainConfig, train_ensemble

    torch.set_num_threads(threads)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()
    try:
        config = TrainConfig(
            data_dir=data_dir or settings.data_dir, work_dir=work_dir, seed=seed, epochs=epochs,
            patience=patience, limit=limit, embedding_seed=embedding_seed,
            embedding_epochs=embedding_epochs, hidden=hidden,
            char_filters=char_filters, char_dim=char_dim,
            time_budget_s=None if time_budget_min is None else 60 * time_budget_min,
            **{name: value for name, value in (
                ("embedding_lr_scale", embedding_lr_scale), ("hashtag_prob", hashtag_prob),
                ("entity_word_dropout", entity_word_dropout),
                ("transfer_weight", transfer_weight), ("bow_dim", bow_dim),
                ("bow_from_vectors", bow_from_vectors),
                ("max_words", max_words), ("entity_tweet", entity_tweet),
                ("entity_detach_pooled", entity_detach_pooled), ("task_weights", task_weight),
                ("sentiment_per_epoch", sentiment_per_epoch),
                ("tweet_prior_correction", tweet_prior_correction),
                ("tweet_class_power", tweet_class_power), ("encoders", encoders),
                ("anonymise_handles", anonymise_handles), ("strip_urls", strip_urls),
                ("sentiment_dev_topics", sentiment_dev_topics),
                ("context_per_epoch", context_per_epoch), ("context_weight", context_weight),
                ("context_mask", context_mask),
                ("dev_repeat", dev_repeat),
                ("train_with_dev",
                 tuple(c for c in train_with_dev if c != "none") if train_with_dev else None),
            ) if value is not None},
        )
    except ValueError as err:
        raise click.UsageError(str(err)) from None
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
    card_path = model_dir / "model_card.json"
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else {}
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
        card_path.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
        click.echo(f"wrote {card_path}")
