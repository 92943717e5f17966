"""The prior-correction study (research.prior_correction) on a slice of SemEval-4A."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_export.calibrate import PRIOR_BETAS
from research.prior_correction import main
from stream.settings import Settings


def small_sentiment(tmp_path: Path) -> Path:
    data_dir = Settings().data_dir
    if not (data_dir / "sentiment").is_dir():
        pytest.fail(f"shared data not found at {data_dir} (set TWEETWATCH_DATA_DIR)")
    small = tmp_path / "data"
    (small / "sentiment").mkdir(parents=True)
    for split, count in (("train", 2000), ("val", 150), ("test", 150)):
        lines = (data_dir / "sentiment" / f"{split}.tsv").read_text(
            encoding="utf-8").splitlines()[:count]
        (small / "sentiment" / f"{split}.tsv").write_text("\n".join(lines) + "\n",
                                                          encoding="utf-8")
    return small


def test_the_beta_val_chooses_is_applied_to_test(tmp_path: Path, capsys):
    model_dir = Settings().model_dir
    main([str(model_dir), "--data-dir", str(small_sentiment(tmp_path))], standalone_mode=False)
    row = json.loads(capsys.readouterr().out.strip())
    assert row["model"] == str(model_dir)
    assert row["beta"] in [float(b) for b in PRIOR_BETAS]
    # val chose the beta, so val can only gain; test may move either way.
    assert row["val_after"] >= row["val_before"]
    assert all(0.0 <= row[k] <= 1.0 for k in ("val_before", "val_after", "test_before",
                                                "test_after"))
    if row["beta"] == 0.0:
        assert row["test_after"] == row["test_before"]


def test_a_folder_without_a_model_is_a_one_line_error(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"{tmp_path}: no model.onnx there")
