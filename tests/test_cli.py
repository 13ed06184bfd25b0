import importlib.util
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from sksurvfusion.cli import main
from sksurvfusion.datasets import load_breast_cancer, make_multimodal_survival


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
    X, _ = load_breast_cancer()
    widths = X.columns.str.split("__").str[0].value_counts()
    report = (tmp_path / "report.md").read_text()
    for name in ("genes", "clinical"):
        line = f"{name}: {widths[name]} columns"
        assert out.index(line) < out.index("integrated Brier")
        assert f"- {line}" in report


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


def _ablate(path, *options):
    return ["ablate", "--data", str(path), "--time", "months", "--event", "dead", *options]


@pytest.fixture
def cohort(tmp_path):
    """A table with a patient ID column where every patient followed past the median died."""
    X, y = make_multimodal_survival(
        80,
        modalities={"mri": 4, "pathology": 4},
        model_names={"mri": None, "pathology": None},
        random_state=0,
    )
    event, time = y[y.dtype.names[0]], y[y.dtype.names[1]]
    frame = X.assign(months=time, dead=(event | (time > np.median(time))).astype(int))
    frame.insert(0, "patient", [f"P{i:03d}" for i in range(len(frame))])
    return frame


def _write(frame, tmp_path, name="cohort.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


class TestOptions:
    def test_version(self, capsys):
        from sksurvfusion import __version__

        with pytest.raises(SystemExit) as exit_:
            main(["--version"])
        assert exit_.value.code == 0
        assert capsys.readouterr().out.strip() == f"sksurvfusion {__version__}"

    @pytest.mark.parametrize(
        ("option", "value", "message"),
        [
            ("--splits", "1", "argument --splits: must be at least 2"),
            ("--splits", "two", "argument --splits: expected a whole number, got 'two'"),
            ("--epochs", "0", "argument --epochs: must be at least 1, got 0"),
            ("--repeats", "0", "argument --repeats: must be at least 1, got 0"),
            ("--seed", "-1", "argument --seed: must be from 0 to 4294967295, got -1"),
            ("--device", "tpu", "argument --device: invalid choice: 'tpu'"),
        ],
    )
    def test_bad_value_is_an_argparse_error(self, option, value, message, capsys):
        with pytest.raises(SystemExit) as exit_:
            main(["demo", option, value])
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err

    def test_splits_repeats_and_epochs_override_quick(self):
        from sksurvfusion import cli

        options = ["demo", "--quick", "--splits", "4", "--repeats", "3", "--epochs", "2"]
        size = cli._study_size(cli._build_parser().parse_args(options))
        assert size == {"n_splits": 4, "n_repeats": 3, "max_epochs": 2}
        assert cli._study_size(cli._build_parser().parse_args(["demo", "--quick"])) == cli._QUICK

    @pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible")
    def test_cuda_without_a_gpu(self, capsys):
        with pytest.raises(SystemExit) as exit_:
            main(["demo", "--device", "cuda"])
        assert exit_.value.code == 2
        assert "--device cuda, but torch sees no CUDA GPU here" in capsys.readouterr().err

    def test_options_reach_the_study(self, cohort, tmp_path, monkeypatch, capsys):
        from sksurvfusion import cli

        seen = {}

        def record(X, y, output, **kwargs):
            seen.update(kwargs, columns=list(X.columns), printed=capsys.readouterr().out)
            return study(X, y, output, **kwargs)

        study = cli.run_study
        monkeypatch.setattr(cli, "run_study", record)
        out = tmp_path / "study"
        options = ["--id-column", "patient", "--epochs", "1", "--splits", "2", "--seed", "7"]
        options += ["--device", "cpu", "--quick", "--no-progress", "--output", str(out)]
        assert main(_ablate(_write(cohort, tmp_path), *options)) == 0

        assert (seen["n_splits"], seen["n_repeats"], seen["random_state"]) == (2, 1, 7)
        networks = {
            name: model[-1].get_params()
            for name, model in seen["models"].items()
            if "Cox" not in name
        }
        assert len(networks) == 3
        for params in networks.values():
            assert (params["max_epochs"], params["random_state"], params["device"]) == (1, 7, "cpu")
        assert "patient" not in seen["columns"]
        # the modalities are listed before the first fit
        assert "mri: 4 columns" in seen["printed"]
        assert "pathology: 4 columns" in seen["printed"]
        # every training fold ends with an event and the other fold reaches past it
        results = pd.read_csv(out / "results.csv")
        assert len(results) == 4 * 2
        assert results["ibs"].between(0, 1).all()
        report = (out / "report.md").read_text()
        assert "- mri: 4 columns" in report and "- pathology: 4 columns" in report


def _set(frame, rows, column, value):
    frame[column] = frame[column].astype(object if isinstance(value, str) else float)
    frame.loc[rows, column] = value


def _drop_modalities(frame, rows, columns):
    frame.loc[rows, [c for c in frame.columns if c.startswith(columns)]] = np.nan


class TestTableValidation:
    """Bad values are reported by line of the file and patient ID, before any fit."""

    def test_text_event_labels_get_a_recoding_hint(self, cohort, tmp_path):
        cohort["dead"] = np.where(cohort["dead"] == 1, "yes", "no")
        with pytest.raises(SystemExit) as exit_:
            main(_ablate(_write(cohort, tmp_path), "--id-column", "patient"))
        text = str(exit_.value.code)
        assert "holds the two labels 'no' and 'yes'" in text
        assert "(df['dead'] == 'yes').astype(int)" in text

    @pytest.mark.parametrize(
        ("change", "rows", "message"),
        [
            (lambda f, r: _set(f, r, "mri__1", np.nan), [3, 40], "modality 'mri' has NaN in only"),
            (lambda f, r: _set(f, r, "pathology__2", np.inf), [5], "'pathology__2' has infinite"),
            (lambda f, r: _drop_modalities(f, r, ("mri", "pathology")), [7], "every modality"),
            (lambda f, r: _set(f, r, "mri__0", "n/a?"), [4], "'mri__0' has 'n/a?' at"),
            (lambda f, r: _set(f, r, "months", -1.0), [2], "--time column 'months' must hold"),
            (lambda f, r: _set(f, r, "months", np.nan), [6, 9], "it has nan at"),
            (lambda f, r: _set(f, r, "dead", 2.0), [8], "must be 0 (censored) or 1 (event)"),
            (lambda f, r: _set(f, r, "dead", "yes"), [0], "(event); it has 'yes' at"),
        ],
    )
    def test_bad_value_names_lines_and_ids(self, cohort, tmp_path, change, rows, message):
        change(cohort, rows)
        path = _write(cohort, tmp_path)
        with pytest.raises(SystemExit) as exit_:
            main(_ablate(path, "--id-column", "patient"))
        text = str(exit_.value.code)
        assert text.startswith("sksurvfusion: error: ")
        assert message in text
        # a CSV's header is its line 1
        where = ", ".join(f"{r + 2} (patient={cohort['patient'][r]})" for r in rows)
        assert f"line{'s' if len(rows) > 1 else ''} {where} of cohort.csv" in text

    def test_rows_without_an_id_column_are_lines(self, cohort, tmp_path):
        cohort = cohort.drop(columns="patient")
        _drop_modalities(cohort, [11], ("mri",))
        _set(cohort, [11], "pathology__0", np.nan)
        with pytest.raises(SystemExit, match=r"NaN in only some of its 4 columns at line 13 of"):
            main(_ablate(_write(cohort, tmp_path)))

    def test_duplicated_ids_are_named(self, cohort, tmp_path):
        cohort.loc[[10, 30], "patient"] = cohort.loc[3, "patient"]
        with pytest.raises(SystemExit) as exit_:
            main(_ablate(_write(cohort, tmp_path), "--id-column", "patient"))
        assert "duplicated ID(s): 'P003' at lines 5, 12, 32 of cohort.csv" in exit_.value.code

    def test_missing_id_column(self, cohort, tmp_path):
        with pytest.raises(SystemExit, match=r"column\(s\) \['pid'\] not in cohort.csv"):
            main(_ablate(_write(cohort, tmp_path), "--id-column", "pid"))

    def test_id_column_left_as_a_feature_is_pointed_to(self, cohort, tmp_path):
        with pytest.raises(SystemExit, match="pass --id-column patient"):
            main(_ablate(_write(cohort, tmp_path)))

    def test_saved_index_is_pointed_to(self, cohort, tmp_path):
        path = tmp_path / "cohort.csv"
        cohort.to_csv(path)
        with pytest.raises(SystemExit, match="'Unnamed: 0' column is a saved pandas index"):
            main(_ablate(path, "--id-column", "patient"))

    def test_modality_prefix_matching_nothing(self, cohort, tmp_path):
        path = _write(cohort, tmp_path)
        with pytest.raises(SystemExit, match="--modality ct=ct__: no column starts with 'ct__'"):
            main(_ablate(path, "--id-column", "patient", "--modality", "ct=ct__"))

    def test_unknown_foundation_model(self, cohort, tmp_path):
        path = _write(cohort, tmp_path)
        with pytest.raises(
            SystemExit, match=r"--models 'vit': .*modality 'pathology' has no model"
        ):
            main(_ablate(path, "--id-column", "patient", "--models", "pathology=vit"))

    def test_more_splits_than_events(self, cohort, tmp_path):
        n_events = int(cohort["dead"].sum())
        path = _write(cohort, tmp_path)
        with pytest.raises(
            SystemExit, match=f"need at least {n_events + 1} events .* has {n_events}"
        ):
            main(_ablate(path, "--id-column", "patient", "--splits", str(n_events + 1)))

    def test_console_gets_no_traceback(self, cohort, tmp_path):
        _set(cohort, [3], "mri__1", np.nan)
        path = _write(cohort, tmp_path)
        command = [sys.executable, "-m", "sksurvfusion", *_ablate(path, "--id-column", "patient")]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 1
        assert done.stderr.startswith("sksurvfusion: error: modality 'mri' has NaN")
        assert "Traceback" not in done.stderr


class TestRowNumbers:
    def test_parquet_rows_count_from_one(self):
        from pathlib import Path

        from sksurvfusion.cli import _Rows

        rows = _Rows(Path("cohort.parquet"), np.array(["A", "B", "C", "D"]), "patient")
        assert rows.describe(np.array([0, 3])) == (
            "rows 1 (patient=A), 4 (patient=D) of cohort.parquet (counting its rows from 1)"
        )

    @pytest.mark.skipif(
        any(importlib.util.find_spec(engine) for engine in ("pyarrow", "fastparquet")),
        reason="a Parquet engine is installed",
    )
    def test_parquet_without_an_engine(self, tmp_path):
        path = tmp_path / "cohort.parquet"
        path.write_bytes(b"PAR1")
        with pytest.raises(SystemExit, match="needs a Parquet engine: pip install pyarrow"):
            main(["ablate", "--data", str(path), "--time", "months", "--event", "dead"])
