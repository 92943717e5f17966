"""4A val and test macro recall of artifacts trained without the tweet-head prior correction,
before and after the correction their 4A val split would choose.

This measured whether ``model_export.calibrate.tweet_prior_correction`` was worth adopting
(docs/model-studies.md, "Less sentiment work for the encoder ... a prior correction",
2026-11-23); the shipped recipe applies it during training.

    python -m research.prior_correction ARTIFACT_DIR... [--data-dir DIR]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click
import numpy as np

from model_export.calibrate import best_beta, prior_sweep, sentiment_gold, train_log_prior
from model_export.corpus import sentiment_examples
from stream.inference import Analyzer
from stream.settings import get_settings


def prior_correction_study(model_dirs: Sequence[Path], data_dir: Path) -> list[dict]:
    """For artifacts trained without the correction: the beta 4A val would choose, and 4A
    val and test macro recall before and after it (fp32 ONNX, the runtime's own outputs)."""
    log_prior = train_log_prior(data_dir)
    splits = {s: sentiment_examples(data_dir, s) for s in ("val", "test")}
    rows = []
    for model_dir in model_dirs:
        analyzer = Analyzer(model_dir)
        sweeps = {}
        for split, examples in splits.items():
            analyses = analyzer.analyze_tokens([e.tokens for e in examples])
            logits = np.log(np.stack([a.tweet_probs for a in analyses]))
            sweeps[split] = prior_sweep(logits, sentiment_gold(examples), log_prior)
        best = best_beta(sweeps["val"])
        rows.append({"model": str(model_dir), "beta": best,
                     **{f"{s}_{when}": round(sweeps[s][b], 4) for s in splits
                        for when, b in (("before", 0.0), ("after", best))}})
    return rows


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model_dirs", nargs=-1, required=True,
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Shared data folder [default: setting TWEETWATCH_DATA_DIR].")
def main(model_dirs: tuple[Path, ...], data_dir: Path | None) -> None:
    """4A val/test macro recall of artifacts before and after the tweet-head prior correction
    that their 4A val split chooses."""
    for missing in [d for d in model_dirs if not (d / "model.onnx").is_file()]:
        raise click.UsageError(f"{missing}: no model.onnx there")
    for row in prior_correction_study(model_dirs, data_dir or get_settings().data_dir):
        click.echo(json.dumps(row))


if __name__ == "__main__":
    main()
