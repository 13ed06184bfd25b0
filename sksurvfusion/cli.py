"""Command line: ``sksurvfusion demo`` and ``sksurvfusion ablate``."""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sksurv.util import Surv

from sksurvfusion import __version__
from sksurvfusion._study import candidate_models, describe_modalities, format_table, run_study
from sksurvfusion.datasets import load_breast_cancer
from sksurvfusion.modality import SEPARATOR, ModalitySelector, resolve_modalities

__all__ = ["main"]

_QUICK = {"n_splits": 3, "n_repeats": 1, "max_epochs": 8}
_FULL = {"n_splits": 5, "n_repeats": 2, "max_epochs": 15}
_MAX_SEED = 2**32 - 1
# rows named in one message; the count of the others follows
_ROWS_SHOWN = 5


def _whole_number(minimum: int, maximum: int | None = None, why: str = "") -> Callable:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"must be {bounds}{why}, got {value}")
        return value

    return parse


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sksurvfusion",
        description="Multi-modal survival prediction from foundation-model embeddings.",
    )
    parser.add_argument("--version", action="version", version=f"sksurvfusion {__version__}")
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
        "--id-column",
        metavar="NAME",
        help="column of patient IDs: not a feature; named in messages and must be unique",
    )
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
        "--quick",
        action="store_true",
        help=f"{_QUICK['n_splits']} splits and {_QUICK['max_epochs']} epochs instead of "
        f"{_FULL['n_splits']} splits repeated {_FULL['n_repeats']} times and "
        f"{_FULL['max_epochs']} epochs: a fast smoke run",
    )
    parser.add_argument(
        "--epochs",
        type=_whole_number(1),
        metavar="N",
        help="training epochs of the networks (overrides --quick)",
    )
    parser.add_argument(
        "--splits",
        type=_whole_number(2, why=" (each split needs a training and a test fold)"),
        metavar="K",
        help="cross-validation folds (overrides --quick)",
    )
    parser.add_argument(
        "--repeats",
        type=_whole_number(1),
        metavar="R",
        help="repetitions of the cross-validation with other folds (overrides --quick)",
    )
    parser.add_argument(
        "--seed",
        type=_whole_number(0, _MAX_SEED),
        default=0,
        metavar="S",
        help="random state of the networks, the cross-validation and the held-out split "
        "(default 0)",
    )
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="cpu",
        help="where the networks train; auto takes a CUDA GPU when torch sees one (default cpu)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _study_size(args) -> dict:
    size = dict(_QUICK if args.quick else _FULL)
    if args.splits is not None:
        size["n_splits"] = args.splits
    if args.repeats is not None:
        size["n_repeats"] = args.repeats
    if args.epochs is not None:
        size["max_epochs"] = args.epochs
    return size


def _fail(message: str) -> SystemExit:
    return SystemExit(f"sksurvfusion: error: {message}")


def _parse_pairs(text: str, option: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise _fail(f"{option} expects NAME=VALUE, got {item!r}")
        pairs[name.strip()] = value.strip()
    return pairs


class _Rows:
    """How a user finds a row of the table: its line in the file and its ID."""

    def __init__(self, path: Path, ids=None, id_column: str | None = None) -> None:
        self.path = path
        self.ids = ids
        self.id_column = id_column

    def _label(self, position: int) -> str:
        # a CSV's header is line 1, so data row i (from 0) is on line i + 2, as editors show
        label = str(position + 2 if self.path.suffix == ".csv" else position + 1)
        if self.ids is not None:
            label += f" ({self.id_column}={self.ids[position]})"
        return label

    def describe(self, positions) -> str:
        """Where the rows at these positions are, e.g. ``"lines 3, 7 of cohort.csv"``."""
        shown = ", ".join(self._label(int(p)) for p in positions[:_ROWS_SHOWN])
        if len(positions) > _ROWS_SHOWN:
            shown += f" and {len(positions) - _ROWS_SHOWN} more"
        noun = "line" if self.path.suffix == ".csv" else "row"
        plural = "s" if len(positions) > 1 else ""
        counted = "" if self.path.suffix == ".csv" else " (counting its rows from 1)"
        return f"{noun}{plural} {shown} of {self.path.name}{counted}"


def _read_table(path: Path, time_column: str, event_column: str, id_column: str | None):
    if not path.is_file():
        raise _fail(f"--data file not found: {path}")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif path.suffix == ".csv":
            frame = pd.read_csv(path)
        else:
            raise _fail(f"--data must be .csv or .parquet, got {path.name}")
    except ImportError:
        raise _fail(f"reading {path.name} needs a Parquet engine: pip install pyarrow") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {path.name} as a table: {exc}") from None
    if len(frame) == 0:
        raise _fail(f"{path.name} has no rows")
    named = {"--time": time_column, "--event": event_column, "--id-column": id_column}
    missing = [c for c in named.values() if c is not None and c not in frame.columns]
    if missing:
        raise _fail(
            f"column(s) {missing} not in {path.name}; "
            f"its columns start with {list(frame.columns[:8])}"
        )
    rows = _Rows(path)
    if id_column is not None:
        ids = frame.pop(id_column)
        _check_ids(ids, rows)
        rows = _Rows(path, ids.to_numpy(), id_column)
    time_ = _check_times(frame.pop(time_column), rows)
    event = _check_events(frame.pop(event_column), rows)
    X = _check_numeric(frame, rows)
    infinite = np.isinf(X.to_numpy()).any(axis=0)
    if infinite.any():
        column = X.columns[np.flatnonzero(infinite)[0]]
        raise _fail(
            f"column {column!r} has infinite values at "
            f"{rows.describe(np.flatnonzero(np.isinf(X[column].to_numpy())))}; "
            "replace them with finite numbers (or leave the whole modality empty)"
        )
    return X, Surv.from_arrays(event, time_), rows


def _check_ids(ids, rows: _Rows) -> None:
    empty = np.flatnonzero(ids.isna().to_numpy())
    if len(empty):
        raise _fail(
            f"--id-column {ids.name!r} is empty at {rows.describe(empty)}; "
            "every patient needs an ID"
        )
    duplicated = ids[ids.duplicated(keep=False)]
    if len(duplicated):
        groups = duplicated.groupby(duplicated, sort=False).groups
        shown = "; ".join(
            f"{_show(value)} at {rows.describe(np.asarray(ids.index.get_indexer(index)))}"
            for value, index in list(groups.items())[:_ROWS_SHOWN]
        )
        raise _fail(
            f"--id-column {ids.name!r} has {len(groups)} duplicated ID(s): {shown}; "
            "one row per patient: merge or remove the repeated rows"
        )


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _numeric(column, rows: _Rows, option: str):
    values = pd.to_numeric(column, errors="coerce")
    bad = np.flatnonzero(values.isna().to_numpy() & column.notna().to_numpy())
    if len(bad):
        raise _fail(
            f"{option} column {column.name!r} has values that are not numbers "
            f"({_show(column.iloc[bad[0]])}) at {rows.describe(bad)}"
        )
    return values.to_numpy(dtype=float)


def _check_times(column, rows: _Rows):
    time_ = _numeric(column, rows, "--time")
    bad = np.flatnonzero(~np.isfinite(time_) | (time_ < 0))
    if len(bad):
        raise _fail(
            f"--time column {column.name!r} must hold a finite time >= 0 for every patient; "
            f"it has {time_[bad[0]]} at {rows.describe(bad)}"
        )
    return time_


def _check_events(column, rows: _Rows):
    event = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isin(event, [0, 1]))
    if len(bad):
        hint = ""
        labels = sorted(map(str, column.dropna().unique()))
        if len(labels) == 2 and column.dtype.kind not in "biuf":
            hint = (
                f"; it holds the two labels {labels[0]!r} and {labels[1]!r}: write them as 0 "
                f"and 1 first, e.g. in pandas df[{column.name!r}] = (df[{column.name!r}] == "
                f"{labels[1]!r}).astype(int) if {labels[1]!r} means the event"
            )
        raise _fail(
            f"--event column {column.name!r} must be 0 (censored) or 1 (event); it has "
            f"{_show(column.iloc[bad[0]])} at {rows.describe(bad)}{hint}"
        )
    return event.astype(bool)


def _check_numeric(frame, rows: _Rows):
    """The features as floats; text that is not a number is an error naming where it is."""
    if frame.shape[1] == 0:
        raise _fail(f"{rows.path.name} has no feature columns besides --time and --event")
    text = {}
    ids = []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column):
            continue
        if pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column):
            values = pd.to_numeric(column, errors="coerce")
            bad = np.flatnonzero(values.isna().to_numpy() & column.notna().to_numpy())
            if len(bad) == 0:
                frame[name] = values
                continue
            if len(bad) < column.notna().sum():
                text[name] = f"{column.iloc[bad[0]]!r} at {rows.describe(bad)}"
            else:
                text[name] = f"text, such as {column.iloc[bad[0]]!r}"
                if column.is_unique:
                    ids.append(name)
        else:
            text[name] = f"values of type {column.dtype}"
    if text:
        first = next(iter(text))
        hint = ""
        if ids:
            hint = f"; if {ids[0]!r} is the patient ID, pass --id-column {ids[0]}"
        raise _fail(
            f"column(s) {list(text)[:8]} of {rows.path.name} are not numeric: {first!r} has "
            f"{text[first]}. Every column but --time, --event and --id-column is read as a "
            f"feature: encode text as numbers or remove it{hint}"
        )
    return frame.astype(float)


def _configurations(X, foundation_models) -> dict:
    """The feature table each configuration's models see, by configuration label."""
    if not foundation_models:
        return {"": X}
    tables = {}
    for label, selection in foundation_models.items():
        try:
            tables[label] = ModalitySelector(selection).fit_transform(X)
        except ValueError as exc:
            raise _fail(f"--models {label!r}: {exc}") from None
    return tables


def _check_modalities(X, rows: _Rows, modalities, foundation_models) -> None:
    """Every modality a model will see: no partial gaps, some modality in every row."""
    unprefixed = [c for c in X.columns if SEPARATOR not in str(c)]
    if modalities is None and 0 < len(unprefixed) < X.shape[1]:
        hint = ""
        if any(str(c).startswith("Unnamed: ") for c in unprefixed):
            hint = (
                " (an 'Unnamed: 0' column is a saved pandas index: write the table with "
                "index=False or remove it)"
            )
        raise _fail(
            f"column(s) {unprefixed[:8]} of {rows.path.name} have no '<modality>__' prefix "
            "while the others do; rename them '<modality>__<name>', choose the modalities with "
            f"--modality NAME=PREFIX, or pass --id-column NAME for an ID column{hint}"
        )
    for label, table in _configurations(X, foundation_models).items():
        where = f" (with --models {label!r})" if label else ""
        try:
            resolved = resolve_modalities(
                modalities, np.asarray(table.columns, dtype=object), table.shape[1]
            )
        except ValueError as exc:
            raise _fail(f"{exc}{where}") from None
        values = table.to_numpy()
        present = np.zeros(len(table), dtype=bool)
        for name, columns in resolved.items():
            gaps = np.isnan(values[:, columns])
            partial = np.flatnonzero(gaps.any(axis=1) & ~gaps.all(axis=1))
            if len(partial):
                first = table.columns[columns[gaps[partial[0]]]]
                raise _fail(
                    f"modality {name!r}{where} has NaN in only some of its {len(columns)} "
                    f"columns at {rows.describe(partial)} (the first lacks "
                    f"{', '.join(map(str, first[:5]))}); fill those gaps, or leave all of "
                    "the modality's columns empty for a patient without that modality"
                )
            present |= ~gaps.all(axis=1)
        empty = np.flatnonzero(~present)
        if len(empty):
            raise _fail(
                f"every modality ({', '.join(resolved)}){where} is empty at "
                f"{rows.describe(empty)}; remove those patients or give them a modality"
            )


def _modality_prefixes(X, pairs: Mapping[str, str]) -> dict[str, str]:
    for name, prefix in pairs.items():
        if not any(str(c).startswith(prefix) for c in X.columns):
            found = sorted({str(c).split(SEPARATOR, 1)[0] for c in X.columns})
            raise _fail(
                f"--modality {name}={prefix}: no column starts with {prefix!r}; "
                f"the columns start with {found[:8]}"
            )
    return {name: "^" + re.escape(prefix) for name, prefix in pairs.items()}


def _check_splits(y, n_splits: int) -> None:
    n_events = int(np.sum(y[y.dtype.names[0]]))
    if n_events < n_splits:
        raise _fail(
            f"{n_splits} cross-validation splits need at least {n_splits} events (one per test "
            f"fold), the table has {n_events}; pass a smaller --splits"
        )


def _run(args, X, y, title: str, modalities=None, foundation_models=None) -> int:
    size = _study_size(args)
    _check_splits(y, size["n_splits"])
    models = candidate_models(
        modalities,
        foundation_models=foundation_models,
        max_epochs=size["max_epochs"],
        random_state=args.seed,
        device=args.device,
    )
    heldout = next(name for name in models if name.startswith("Mamba"))
    n_splits = size["n_splits"] * size["n_repeats"]
    print(f"{title}: {len(y)} patients, {int(y[y.dtype.names[0]].sum())} events")
    print("modalities:")
    for line in describe_modalities(X, modalities):
        print(f"  {line}")
    repeated = f", repeated {size['n_repeats']} times" if size["n_repeats"] > 1 else ""
    epochs = size["max_epochs"]
    print(
        f"{len(models)} models, {size['n_splits']}-fold cross-validation{repeated}, "
        f"{epochs} training epoch{'s' if epochs != 1 else ''} per network"
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        # the listing above already names the columns in no modality
        warnings.filterwarnings("ignore", message="modalities leaves", category=UserWarning)
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
            random_state=args.seed,
            modalities=modalities,
        )
    print()
    print(f"{title}: {len(y)} patients, {n_splits} splits")
    print(format_table(result.table))
    print(f"\nheld-out {heldout}: {result.heldout_c_index}")
    print(f"wrote results.csv, ablation.png, risk_groups.png, report.md to {args.output}")
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str or None, default=None
        The arguments after the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    int
        Exit status, 0 on success. Bad input exits through :class:`SystemExit`
        with a message (status 2 for a bad option, 1 for a bad table).

    Examples
    --------
    The same as ``sksurvfusion --version`` in a shell:

    >>> from sksurvfusion.cli import main
    >>> main(["--version"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    SystemExit: 0
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            parser.error("--device cuda, but torch sees no CUDA GPU here; use --device cpu")
    if args.command == "demo":
        X, y = load_breast_cancer()
        return _run(args, X, y, "GSE7390 breast cancer (genes + clinical)")

    modality_pairs = _parse_pairs(",".join(args.modality), "--modality") if args.modality else {}
    foundation_models = None
    if args.models:
        foundation_models = {
            "/".join(pairs.values()): pairs
            for pairs in (_parse_pairs(text, "--models") for text in args.models)
        }
    X, y, rows = _read_table(args.data, args.time, args.event, args.id_column)
    modalities = _modality_prefixes(X, modality_pairs) if modality_pairs else None
    _check_modalities(X, rows, modalities, foundation_models)
    return _run(args, X, y, args.data.stem, modalities, foundation_models)


if __name__ == "__main__":
    sys.exit(main())
