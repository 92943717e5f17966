"""Will ``tweetwatch train`` rebuild the committed artifact's weights on this machine?

The recipe is deterministic for a seed, but the FastText vectors differ in their last digits
between CPU models, and every network trained on them differs with them. So the vectors
decide: this builds them as ``tweetwatch train`` does (about 9 minutes on 2 cores, cached in
the work folder, where a later ``tweetwatch train`` finds them), stores them as the artifact
stores its word table (fp16, then int8 rows with a scale per row) and compares that, row by
row, with the table inside ``model.onnx``. Identical rows and vocabulary mean a training run
with the card's seeds and options rebuilds the artifact here, so a paired study may stand on
the committed run instead of training it again; any difference means another draw of the
recipe.

    python -m research.rebuild_check [--model-dir DIR] [--data-dir DIR] [--work-dir runs]

Exit status 0 when the vectors match, 1 when they differ, 2 on bad arguments.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

from stream.inference import MODEL_CARD, read_model_card
from stream.settings import get_settings
from stream.textproc import Vocab

# The training options that shape the vocabulary and the vectors (the card's train_config).
VECTOR_OPTIONS = ("embedding_seed", "embedding_epochs", "max_words", "word_dim",
                  "mitchell_folds")


@dataclass(frozen=True, slots=True)
class TableMatch:
    """How the word table built here compares with the artifact's."""

    same_vocab: bool
    rows: int
    rows_equal: int
    max_abs_diff: float

    @property
    def identical(self) -> bool:
        return self.same_vocab and self.rows_equal == self.rows


def artifact_word_table(model_path: Path) -> np.ndarray:
    """The shared word table of ``model.onnx`` as the runtime reads it (int8 rows times their
    scale, or the fp16/fp32 table itself)."""
    import onnx
    from onnx import numpy_helper

    tables = {init.name: numpy_helper.to_array(init)
              for init in onnx.load(str(model_path)).graph.initializer
              if "word_embedding.weight" in init.name}
    names = sorted(name for name in tables if name.endswith("word_embedding.weight"))
    if not names:
        raise ValueError(f"{model_path}: no word_embedding.weight initializer")
    table = tables[names[0]].astype(np.float32)
    scale = tables.get(f"{names[0]}_scale")
    return table * scale if scale is not None else table


def stored_word_table(matrix: np.ndarray, embedding_fp16: bool,
                      word_table_int8: bool) -> np.ndarray:
    """``matrix`` rounded as ``write_artifact`` rounds the trained word table before export."""
    from model_export.export import quantize_rows

    table = matrix.astype(np.float16).astype(np.float32) if embedding_fp16 else matrix
    if word_table_int8:
        q, scale = quantize_rows(table)
        table = q.astype(np.float32) * scale
    return table


def compare_tables(vocab: Vocab, table: np.ndarray, artifact_vocab: Vocab,
                   artifact_table: np.ndarray) -> TableMatch:
    """Row-by-row comparison; tables of different shapes match nowhere."""
    same_vocab = vocab.words == artifact_vocab.words
    if table.shape != artifact_table.shape:
        return TableMatch(same_vocab, artifact_table.shape[0], 0, float("inf"))
    return TableMatch(same_vocab, table.shape[0],
                      int((table == artifact_table).all(axis=1).sum()),
                      float(np.abs(table - artifact_table).max()))


_FOLDER = click.Path(file_okay=False, path_type=Path)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model-dir", type=_FOLDER, default=None,
              help="Artifact to compare with [default: the served model].")
@click.option("--data-dir", type=_FOLDER, default=None,
              help="Shared data folder [default: setting TWEETWATCH_DATA_DIR].")
@click.option("--work-dir", type=_FOLDER, default=Path("runs"), show_default=True,
              help="Scratch folder holding the vector cache.")
def main(model_dir: Path | None, data_dir: Path | None, work_dir: Path) -> None:
    """Does this machine build the artifact's word vectors (and so rebuild its weights)?"""
    settings = get_settings()
    model_dir = model_dir or settings.model_dir
    data_dir = data_dir or settings.data_dir
    for name in (MODEL_CARD, "model.onnx", "vocab.json"):
        if not (model_dir / name).is_file():
            raise click.UsageError(f"no {name} in {model_dir}")
    if not (data_dir / "unlabeled" / "tweets.txt").is_file():
        raise click.UsageError(f"no unlabeled/tweets.txt under {data_dir}")

    from model_export.recipe import recipe_config
    from model_export.train import prepare_vocab

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    recipe = read_model_card(model_dir)["train_config"]
    config = recipe_config(data_dir, work_dir=work_dir, encoders=recipe["encoders"],
                           **{name: recipe[name] for name in VECTOR_OPTIONS})
    vocab, matrix, _ = prepare_vocab(config)
    match = compare_tables(
        vocab, stored_word_table(matrix, config.embedding_fp16, config.word_table_int8),
        Vocab.load(model_dir / "vocab.json"),
        artifact_word_table(model_dir / "model.onnx"))
    click.echo(f"vocabulary: {'the same' if match.same_vocab else 'DIFFERENT'} "
               f"({len(vocab.words):,} words here)")
    click.echo(f"word table: {match.rows_equal:,} of {match.rows:,} rows identical "
               f"(largest difference {match.max_abs_diff:.3g})")
    if match.identical:
        click.echo("this machine builds the artifact's vectors: tweetwatch train with the "
                   "card's seeds and options rebuilds its weights")
        return
    click.echo("this machine builds other vectors: tweetwatch train trains another draw of "
               "the recipe, not the committed weights")
    sys.exit(1)


if __name__ == "__main__":
    main()
