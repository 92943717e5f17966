"""The training recipe: one TOML file (``recipe.toml``) read into one typed ``TrainConfig``.

The file states every value that decides the trained weights, once; ``tweetwatch train``
overrides single values by dotted name (``--set train.epochs=3``, as spaCy's config does) and
the model card stores the result (``train_config``). Run controls that do not change what a
finished run learns from its data (data and work folders, smoke-run limits) are options of the
command, not recipe values.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from model_export.corpus import dev_shares, fully_trained
from model_export.model import ENCODERS

DEFAULT_RECIPE = Path(__file__).with_name("recipe.toml")
FP32_MAX_WORDS = 30_000  # larger vocabularies are stored as fp16 (TrainConfig.embedding_fp16)


def member_spec(entry: str) -> tuple[str, int | None]:
    """``"bilstm:14"`` -> ``("bilstm", 14)``; ``"idcnn"`` -> ``("idcnn", None)``: seed None
    means the recipe's ``seeds.seed``. Members differ by encoder, by seed, or both."""
    encoder, _, seed = entry.partition(":")
    if encoder not in ENCODERS or (seed and not seed.isdigit()) or entry.endswith(":"):
        raise ValueError(f"{entry!r}: a member is an encoder ({', '.join(ENCODERS)}), "
                         "optionally with :SEED (e.g. bilstm:14)")
    return encoder, int(seed) if seed else None


def _in(section: str) -> Any:
    """A recipe value, read from ``[section]`` of the recipe file (no default: the file
    states it)."""
    return dataclasses.field(metadata={"section": section})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights, as read from the recipe file (see
    ``recipe.toml`` for what each value means), plus the run controls. A new recipe value is
    a field here and a line in ``recipe.toml``."""

    data_dir: Path
    seed: int = _in("seeds")
    embedding_seed: int = _in("seeds")
    max_words: int = _in("vectors")
    word_dim: int = _in("vectors")
    embedding_epochs: int = _in("vectors")
    embedding_lr_scale: float = _in("vectors")
    encoders: tuple[str, ...] = _in("network")
    hidden: int = _in("network")
    char_dim: int = _in("network")
    char_filters: int = _in("network")
    dilations: tuple[int, ...] = _in("network")
    dropout: float = _in("network")
    tweet_bow: bool = _in("network")
    bow_dim: int = _in("network")
    bow_from_vectors: bool = _in("network")
    entity_tweet: bool = _in("network")
    entity_detach_pooled: bool = _in("network")
    unlabeled_files: tuple[str, ...] = _in("data")
    tmsc_train: bool = _in("data")
    mitchell_folds: tuple[int, ...] = _in("data")
    sentiment_per_epoch: int = _in("data")
    topic_per_epoch: int = _in("data")
    oversample: dict[str, int] = _in("data")
    train_with_dev: tuple[str, ...] = _in("data")
    dev_repeat: int = _in("data")
    sentiment_dev_topics: float = _in("data")
    anonymise_handles: bool = _in("data")
    transfer: dict[str, tuple[str, ...]] = _in("data")
    transfer_weight: float = _in("data")
    lowercase_prob: float = _in("augment")
    hashtag_prob: float = _in("augment")
    hashtag_heads: tuple[str, ...] = _in("augment")
    word_dropout: float = _in("augment")
    contrast_prob: float = _in("augment")
    epochs: int = _in("train")
    patience: int = _in("train")
    batch_size: int = _in("train")
    lr: float = _in("train")
    ner_o_weight: float = _in("train")
    tweet_class_power: float = _in("train")
    task_weights: dict[str, float] = _in("train")
    tweet_prior_correction: bool = _in("train")
    teacher: str = _in("distill")
    distill_labelled: bool = _in("distill")
    unlabeled_per_epoch: int = _in("distill")
    temperature: float = _in("distill")
    head_weights: dict[str, float] = _in("distill")
    # Run controls (command options, not recipe values).
    work_dir: Path = Path("runs")
    limit: int | None = None  # examples per training set (tests and smoke runs)
    time_budget_s: float | None = None
    evaluate_dev: bool = True  # False (smoke runs, tests): no dev scoring, keep the last epoch

    def __post_init__(self) -> None:
        members = [member_spec(entry) for entry in self.encoders]
        if not members:
            raise ValueError("network.encoders: at least one encoder")
        if len({(e, self.seed if s is None else s) for e, s in members}) < len(members):
            raise ValueError(f"{','.join(self.encoders)}: a member is listed twice "
                             "(it would train the same network again)")
        if len(self.encoders) > 1 and self.embedding_lr_scale > 0:
            raise ValueError("ensemble members share one frozen word table: "
                             "use vectors.embedding_lr_scale=0 with several encoders")
        dev_shares(self.train_with_dev)
        if not 0 <= self.sentiment_dev_topics < 1:
            raise ValueError(f"data.sentiment_dev_topics={self.sentiment_dev_topics}: a share "
                             "of the topics in [0, 1)")
        if self.dev_repeat < 1:
            raise ValueError(f"data.dev_repeat={self.dev_repeat}: a whole number of passes, "
                             ">= 1")
        if set(self.task_weights) != {"ner", "entity", "tweet"} or min(
                self.task_weights.values()) < 0:
            raise ValueError("train.task_weights: a weight >= 0 for each of ner, entity, tweet")
        if set(self.head_weights) != {"ner", "entity", "tweet"} or min(
                self.head_weights.values()) < 0:
            raise ValueError("distill.head_weights: a weight >= 0 for each of ner, entity, "
                             "tweet")
        if self.temperature <= 0:
            raise ValueError(f"distill.temperature={self.temperature}: must be > 0")
        if self.unlabeled_per_epoch < 0:
            raise ValueError(f"distill.unlabeled_per_epoch={self.unlabeled_per_epoch}: "
                             "a count >= 0")
        if self.hidden % 2 and any("bilstm" in member_spec(e)[0] for e in self.encoders):
            raise ValueError(f"network.hidden={self.hidden}: a BiLSTM encoder needs an even "
                             "width (half of it each way)")

    @property
    def embedding_fp16(self) -> bool:
        """Store the big tables as fp16 in model.onnx (the int8 model quantises them anyway):
        above 30,000 words an fp32 word table would push the artifact past its 25 MB limit.
        The weights are rounded to fp16 after training, so torch and ONNX still agree."""
        return self.max_words > FP32_MAX_WORDS

    @property
    def dev_shares(self) -> dict[str, float]:
        """Share of each NER dev split that trains (see ``data.train_with_dev``)."""
        return dev_shares(self.train_with_dev)

    @property
    def dev_trained(self) -> tuple[str, ...]:
        """NER corpora whose whole dev split trains: they get no dev score and no
        calibration."""
        return fully_trained(self.dev_shares)

    @property
    def word_table_int8(self) -> bool:
        """Store the shared word table as int8 rows in model.onnx: with several members the
        fp16 table would push the artifact past its 25 MB limit."""
        return len(self.encoders) > 1

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some values changed (checked like the original)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The card's ``train_config``: every value, flat, plus the storage it implies."""
        data = asdict(self)
        data["embedding_fp16"] = self.embedding_fp16
        data["word_table_int8"] = self.word_table_int8
        data["data_dir"] = str(self.data_dir)
        data["work_dir"] = str(self.work_dir)
        return data

    def recipe(self) -> dict[str, dict[str, Any]]:
        """The recipe values by section, as the recipe file holds them."""
        flat = asdict(self)
        return {section: {name: flat[name] for name in names}
                for section, names in SECTIONS.items()}


SECTION_OF: dict[str, str] = {f.name: f.metadata["section"]
                               for f in dataclasses.fields(TrainConfig) if "section" in f.metadata}
SECTIONS: dict[str, tuple[str, ...]] = {
    section: tuple(name for name, s in SECTION_OF.items() if s == section)
    for section in dict.fromkeys(SECTION_OF.values())}
_HINTS = typing.get_type_hints(TrainConfig)
_RUN_CONTROLS = ("data_dir", "work_dir", "limit", "time_budget_s", "evaluate_dev")


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` (as TOML gives it) as the type ``hint`` names, or a one-line ValueError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    where = f"{SECTION_OF.get(name, name)}.{name}" if name in SECTION_OF else name
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        return _coerce(name, value, next(a for a in args if a is not type(None)))
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(name, item, args[0]) for item in value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a table {{KEY = VALUE}}, got {value!r}")
        return {str(k): _coerce(name, v, args[1]) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is Path:
        return Path(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: no conversion for {hint!r}")


def read_recipe(path: Path = DEFAULT_RECIPE) -> dict[str, dict[str, Any]]:
    """The recipe file's sections; every value the recipe needs must be there, and no other."""
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not a valid TOML recipe ({err})") from None
    found = {f"{section}.{name}" for section, values in document.items()
             if isinstance(values, Mapping) for name in values}
    found |= {section for section, values in document.items() if not isinstance(values, Mapping)}
    needed = {f"{section}.{name}" for name, section in SECTION_OF.items()}
    if unknown := sorted(found - needed):
        raise ValueError(f"{path}: unknown recipe key {unknown[0]} (keys: "
                         f"{', '.join(sorted(needed))})")
    if missing := sorted(needed - found):
        raise ValueError(f"{path}: recipe key {missing[0]} is missing")
    return {section: dict(values) for section, values in document.items()}


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.epochs=3"`` -> ``("train.epochs", 3)``: the value is read as a TOML value
    (``[\"idcnn\"]``, ``true``, ``0.5``); anything else is taken as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or "." not in key:
        raise ValueError(f"{text!r}: expected SECTION.KEY=VALUE, e.g. train.epochs=3")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def apply_overrides(recipe: Mapping[str, Mapping[str, Any]],
                    overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A copy of ``recipe`` with dotted-name overrides (``{"train.epochs": 3}``) applied."""
    merged = {section: dict(values) for section, values in recipe.items()}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if SECTION_OF.get(name) != section:
            raise ValueError(f"unknown recipe key {key} (keys: "
                             + ", ".join(f"{s}.{n}" for n, s in SECTION_OF.items()) + ")")
        merged[section][name] = value
    return merged


def recipe_config(data_dir: Path, *, recipe: Path | Mapping[str, Mapping[str, Any]] =
                  DEFAULT_RECIPE, overrides: Mapping[str, Any] | Sequence[str] = (),
                  **values: Any) -> TrainConfig:
    """The ``TrainConfig`` of a recipe file (default: the shipped recipe) with dotted-name
    ``overrides`` (``{"train.epochs": 3}`` or ``["train.epochs=3"]``) and then ``values`` by
    plain name (``epochs=3``, ``limit=32``: run controls and recipe values alike) applied."""
    sections = read_recipe(recipe) if isinstance(recipe, str | Path) else recipe
    if not isinstance(overrides, Mapping):
        overrides = dict(parse_override(text) for text in overrides)
    plain = {f"{SECTION_OF[k]}.{k}": v for k, v in values.items() if k in SECTION_OF}
    sections = apply_overrides(sections, {**overrides, **plain})
    fields: dict[str, Any] = {k: v for k, v in values.items() if k not in SECTION_OF}
    if unknown := sorted(set(fields) - set(_RUN_CONTROLS)):
        raise ValueError(f"unknown training value {unknown[0]}")
    fields["data_dir"] = data_dir
    for section, names in SECTIONS.items():
        for name in names:
            fields[name] = sections[section][name]
    return TrainConfig(**{name: _coerce(name, value, _HINTS[name])
                          for name, value in fields.items()})
