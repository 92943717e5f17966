"""The training recipe file: the shipped recipe is the shipped model's, and overrides by
dotted name are checked like the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_export.recipe import (
    DEFAULT_RECIPE,
    SECTION_OF,
    SECTIONS,
    apply_overrides,
    parse_override,
    read_recipe,
    recipe_config,
)
from stream.settings import DEFAULT_MODEL_DIR

SHIPPED_CARD = DEFAULT_MODEL_DIR / "model_card.json"


def test_the_recipe_file_is_the_shipped_models_recipe():
    """`tweetwatch train` with no options trains what the committed card says was trained."""
    trained = json.loads(SHIPPED_CARD.read_text(encoding="utf-8"))["train_config"]
    config = recipe_config(Path(trained["data_dir"]))
    stored = json.loads(json.dumps(config.to_dict()))  # as the card stores it
    for name in SECTION_OF:
        assert stored[name] == trained[name], name
    assert config.embedding_fp16 == trained["embedding_fp16"]
    assert config.word_table_int8 == trained["word_table_int8"]
    # Each recipe value lives in exactly one section; the card holds them all.
    assert sum(len(names) for names in SECTIONS.values()) == len(SECTION_OF)


def test_overrides_by_dotted_name_are_typed_like_the_recipe():
    assert parse_override("train.epochs=3") == ("train.epochs", 3)
    assert parse_override('network.encoders=["idcnn", "bilstm:14"]') == (
        "network.encoders", ["idcnn", "bilstm:14"])
    assert parse_override("data.anonymise_handles=false") == ("data.anonymise_handles", False)
    config = recipe_config(Path("."), overrides=["train.epochs=3", "train.lr=1e-3",
                                                 "network.encoders=['idcnn']",
                                                 "data.train_with_dev=[]"])
    assert (config.epochs, config.lr, config.encoders, config.train_with_dev) == (
        3, 0.001, ("idcnn",), ())
    assert config.dilations == (1, 2, 4) and isinstance(config.lr, float)
    # Integers are accepted where the recipe has a float, never the other way round.
    assert recipe_config(Path("."), overrides={"train.lr": 1}).lr == 1.0
    with pytest.raises(ValueError, match="train.epochs: expected a whole number, got 2.5"):
        recipe_config(Path("."), overrides={"train.epochs": 2.5})
    with pytest.raises(ValueError, match="data.anonymise_handles: expected true or false"):
        recipe_config(Path("."), overrides={"data.anonymise_handles": 1})
    with pytest.raises(ValueError, match="unknown recipe key network.epochs"):
        apply_overrides(read_recipe(), {"network.epochs": 3})


def test_a_recipe_file_must_name_every_value_once(tmp_path: Path):
    text = DEFAULT_RECIPE.read_text(encoding="utf-8")
    missing = tmp_path / "missing.toml"
    missing.write_text(text.replace("patience = 4", ""), encoding="utf-8")
    with pytest.raises(ValueError, match="recipe key train.patience is missing"):
        read_recipe(missing)
    extra = tmp_path / "extra.toml"
    extra.write_text(text + "\n[knobs]\nstrip_urls = true\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown recipe key knobs.strip_urls"):
        read_recipe(extra)
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nepochs = 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a valid TOML recipe"):
        read_recipe(broken)
    changed = tmp_path / "short.toml"
    changed.write_text(text.replace("epochs = 16", "epochs = 2"), encoding="utf-8")
    assert recipe_config(Path("."), recipe=changed).epochs == 2


def test_plain_names_and_run_controls():
    config = recipe_config(Path("data"), limit=32, epochs=1, encoders=["idcnn"])
    assert (config.limit, config.epochs, config.encoders) == (32, 1, ("idcnn",))
    assert config.replace(seed=14).seed == 14
    with pytest.raises(ValueError, match="unknown training value strip_urls"):
        recipe_config(Path("data"), strip_urls=True)
    nested = config.recipe()
    assert list(nested) == list(SECTIONS) and nested["train"]["epochs"] == 1
