import numpy as np
import pandas as pd
import pytest

from sksurvfusion.cli import main
from sksurvfusion.datasets import make_multimodal_survival


def test_demo_quick_writes_its_files(tmp_path, capsys):
    assert main(["demo", "--quick", "--no-progress", "--output", str(tmp_path)]) == 0
    for name in ("results.csv", "ablation.png", "risk_groups.png", "report.md"):
        assert (tmp_path / name).stat().st_size > 0
    results = pd.read_csv(tmp_path / "results.csv")
    assert set(results["model"]) == {"Mamba", "Transformer", "MLP", "Cox (ridge)"}
    assert len(results) == 4 * 3
    assert results["c_index"].between(0, 1).all()
    assert (results["ibs"] > 0).all()
    out = capsys.readouterr().out
    assert "Mamba" in out and "integrated Brier" in out


@pytest.fixture
def embedding_table(tmp_path):
    X, y = make_multimodal_survival(
        60,
        modalities={"mri": 4, "pathology": 4},
        model_names={"mri": "medimageinsight", "pathology": "uni2h"},
        random_state=0,
    )
    event, time = y.dtype.names
    frame = X.assign(months=y[time], dead=y[event].astype(int))
    path = tmp_path / "cohort.csv"
    frame.to_csv(path, index=False)
    return path


class TestAblate:
    def test_missing_file(self, tmp_path):
        with pytest.raises(SystemExit, match="--data file not found"):
            main(["ablate", "--data", str(tmp_path / "nope.csv"), "--time", "t", "--event", "e"])

    def test_missing_column_lists_columns(self, embedding_table):
        with pytest.raises(SystemExit, match=r"column\(s\) \['days'\] not in cohort.csv"):
            main(["ablate", "--data", str(embedding_table), "--time", "days", "--event", "dead"])

    def test_bad_modality_option(self, embedding_table):
        with pytest.raises(SystemExit, match="--modality expects NAME=VALUE"):
            main(
                [
                    "ablate",
                    "--data",
                    str(embedding_table),
                    "--time",
                    "months",
                    "--event",
                    "dead",
                    "--modality",
                    "mri",
                ]
            )

    def test_text_column_is_named(self, embedding_table):
        frame = pd.read_csv(embedding_table)
        frame.insert(0, "patient_id", [f"P{i}" for i in range(len(frame))])
        frame.to_csv(embedding_table, index=False)
        with pytest.raises(SystemExit, match=r"column\(s\) \['patient_id'\] of cohort.csv"):
            main(["ablate", "--data", str(embedding_table), "--time", "months", "--event", "dead"])

    def test_runs_on_a_user_table(self, embedding_table, tmp_path):
        out = tmp_path / "study"
        code = main(
            [
                "ablate",
                "--data",
                str(embedding_table),
                "--time",
                "months",
                "--event",
                "dead",
                "--models",
                "mri=medimageinsight,pathology=uni2h",
                "--quick",
                "--no-progress",
                "--output",
                str(out),
            ]
        )
        assert code == 0
        results = pd.read_csv(out / "results.csv")
        assert "Mamba medimageinsight/uni2h" in set(results["model"])
        assert np.isfinite(results["c_index"]).all()
