"""Command line: ``sksurvfusion demo`` and ``sksurvfusion ablate``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sksurvfusion",
        description="Multi-modal survival prediction from foundation-model embeddings.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="compare the Mamba, Transformer and MLP adapters and a Cox baseline on the "
        "bundled breast-cancer cohort (GSE7390: gene expression + clinical modalities)",
    )
    _add_study_options(demo, default_output="sksurvfusion-demo")

    ablate = commands.add_parser(
        "ablate", help="run the same study on your own embedding table (CSV or Parquet)"
    )
    ablate.add_argument("--data", type=Path, required=True, help="a .csv or .parquet file")
    ablate.add_argument("--time", required=True, help="column of observed times")
    ablate.add_argument("--event", required=True, help="column of event indicators (1 = event)")
    ablate.add_argument(
        "--modality",
        action="append",
        default=[],
        metavar="NAME=PREFIX",
        help="a modality made of the columns starting with PREFIX (repeatable); by default "
        "columns are grouped by the text before their first '__'",
    )
    ablate.add_argument(
        "--models",
        action="append",
        default=[],
        metavar="MODALITY=MODEL[,MODALITY=MODEL...]",
        help="one foundation-model configuration (columns named '<modality>__<model>__<k>'), "
        "e.g. 'mri=medimageinsight,pathology=uni2h'; repeat to compare several",
    )
    _add_study_options(ablate, default_output="sksurvfusion-ablation")
    return parser


def _add_study_options(parser: argparse.ArgumentParser, default_output: str) -> None:
    parser.add_argument("--output", type=Path, default=Path(default_output), help="folder")
    parser.add_argument(
        "--quick", action="store_true", help="3 splits and 8 epochs: a fast smoke run"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _study_size(quick: bool) -> dict:
    if quick:
        return {"n_splits": 3, "n_repeats": 1, "max_epochs": 8}
    return {"n_splits": 5, "n_repeats": 2, "max_epochs": 15}


def _parse_pairs(text: str, option: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise SystemExit(f"sksurvfusion: error: {option} expects NAME=VALUE, got {item!r}")
        pairs[name.strip()] = value.strip()
    return pairs


def _read_table(path: Path, time_column: str, event_column: str):
    import numpy as np
    import pandas as pd
    from sksurv.util import Surv

    if not path.is_file():
        raise SystemExit(f"sksurvfusion: error: --data file not found: {path}")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix == ".csv":
        frame = pd.read_csv(path)
    else:
        raise SystemExit(f"sksurvfusion: error: --data must be .csv or .parquet, got {path.name}")
    missing = [c for c in (time_column, event_column) if c not in frame.columns]
    if missing:
        raise SystemExit(
            f"sksurvfusion: error: column(s) {missing} not in {path.name}; "
            f"its columns start with {list(frame.columns[:8])}"
        )
    event = frame.pop(event_column).to_numpy()
    time_ = frame.pop(time_column).to_numpy(dtype=float)
    if not np.isin(event, [0, 1]).all():
        raise SystemExit(f"sksurvfusion: error: --event column {event_column!r} must be 0/1")
    text = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise SystemExit(
            f"sksurvfusion: error: column(s) {text[:8]} of {path.name} are not numeric; every "
            "column but --time and --event is read as a feature: remove identifier and text "
            "columns first"
        )
    return frame.astype(float), Surv.from_arrays(event.astype(bool), time_)


def _run(args, X, y, title: str, modalities=None, foundation_models=None) -> int:
    from sksurvfusion._study import candidate_models, format_table, run_study

    size = _study_size(args.quick)
    models = candidate_models(
        modalities, foundation_models=foundation_models, max_epochs=size["max_epochs"]
    )
    heldout = next(name for name in models if name.startswith("Mamba"))
    start = time.perf_counter()
    result = run_study(
        X,
        y,
        args.output,
        models=models,
        n_splits=size["n_splits"],
        n_repeats=size["n_repeats"],
        heldout_model=heldout,
        title=title,
        progress=not args.no_progress,
    )
    print()
    print(f"{title}: {len(y)} patients, {size['n_splits'] * size['n_repeats']} splits")
    print(format_table(result.table))
    print(f"\nheld-out {heldout}: {result.heldout_c_index}")
    print(f"wrote results.csv, ablation.png, risk_groups.png, report.md to {args.output}")
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "demo":
        from sksurvfusion.datasets import load_breast_cancer

        X, y = load_breast_cancer()
        return _run(args, X, y, "GSE7390 breast cancer (genes + clinical)")

    X, y = _read_table(args.data, args.time, args.event)
    modalities = None
    if args.modality:
        import re

        pairs = _parse_pairs(",".join(args.modality), "--modality")
        modalities = {name: "^" + re.escape(prefix) for name, prefix in pairs.items()}
    foundation_models = None
    if args.models:
        foundation_models = {
            "/".join(pairs.values()): pairs
            for pairs in (_parse_pairs(text, "--models") for text in args.models)
        }
    return _run(args, X, y, args.data.stem, modalities, foundation_models)


if __name__ == "__main__":
    sys.exit(main())
