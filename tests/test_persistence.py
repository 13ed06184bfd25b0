import doctest
import io
import json
import os
import pickle
import sys
import zipfile

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from sksurvfusion import (
    M4SurvivalEstimator,
    ModalitySelector,
    _persistence,
    load_pipeline,
    make_cox_baseline,
    save_pipeline,
)
from sksurvfusion.baselines import ModalityPreprocessor
from sksurvfusion.datasets import make_multimodal_survival

TINY = {
    "d_model": 8,
    "encoder_hidden": 16,
    "n_layers": 1,
    "d_state": 4,
    "n_heads": 2,
    "max_epochs": 2,
    "batch_size": 32,
    "random_state": 0,
}
# the parameter each model file format added
ADDED_IN_FORMAT = {2: "linear_term", 3: "swa_fraction"}


@pytest.fixture(scope="module")
def data():
    return make_multimodal_survival(
        80, modalities={"t1": 6, "t2": 6, "pathology": 10}, random_state=0
    )


@pytest.fixture(scope="module")
def fitted(data):
    return M4SurvivalEstimator(**TINY).fit(*data)


@pytest.fixture(scope="module")
def pipeline(data):
    return make_pipeline(
        StandardScaler().set_output(transform="pandas"), M4SurvivalEstimator(**TINY)
    ).fit(*data)


@pytest.fixture(scope="module")
def two_models_per_modality():
    """Columns ``"<modality>__<model>__<k>"`` of two foundation models per modality."""
    names = [
        {"mri": "medimageinsight", "pathology": "uni2h"},
        {"mri": "biomedclip", "pathology": "gigapath"},
    ]
    tables = [
        make_multimodal_survival(
            80, modalities={"mri": 6, "pathology": 6}, model_names=n, random_state=4
        )
        for n in names
    ]
    return pd.concat([tables[0][0], tables[1][0]], axis=1), tables[0][1], names


def _save_as_format(model, path, version):
    """Save ``model`` as sksurvfusion wrote format ``version``: without the parameters
    that later formats added."""
    model.save(path)
    payload = torch.load(path, weights_only=True)
    header = json.loads(payload["header"])
    for added_in, name in ADDED_IN_FORMAT.items():
        if added_in > version:
            del header["params"][name]
    header["format"] = version
    torch.save(payload | {"header": json.dumps(header)}, path)


def _messages(exc):
    """The text of ``exc`` and of the exceptions a traceback shows chained to it."""
    texts = []
    while exc is not None:
        texts.append(str(exc))
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return "\n".join(texts)


def _assert_same_predictions(restored, original, X, y):
    np.testing.assert_array_equal(restored.predict(X), original.predict(X))
    np.testing.assert_array_equal(
        restored.predict_survival_function(X, return_array=True),
        original.predict_survival_function(X, return_array=True),
    )
    assert restored.score(X, y) == original.score(X, y)


class _MakeDirectoryWhenUnpickled:
    """Unpickling it calls ``os.mkdir(path)``: code from the file, run by pickle."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


class _OwnScaler(TransformerMixin, BaseEstimator):
    """A user's transformer, a type that no allow-list knows."""

    def fit(self, X, y=None):
        self.scale_ = np.asarray(X).std(axis=0)
        return self

    def transform(self, X):
        return X / self.scale_


def _rewrite(path, schema=None, entries=None):
    """Rewrite the zip archive ``path`` with ``schema.json`` and other entries replaced."""
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    if schema is not None:
        contents["schema.json"] = json.dumps(schema).encode()
    contents |= entries or {}
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in contents.items():
            archive.writestr(name, content)


def _schema(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("schema.json"))


def _nodes(state):
    """Every node of a skops schema, depth first."""
    if isinstance(state, dict):
        if "__loader__" in state:
            yield state
        for value in state.values():
            yield from _nodes(value)
    elif isinstance(state, list):
        for value in state:
            yield from _nodes(value)


def _node_of_class(schema, class_name):
    return next(node for node in _nodes(schema) if node.get("__class__") == class_name)


def _call_node(function, *args):
    """A skops node that, when built, calls ``function(*args)``."""
    arguments = _schema(io.BytesIO(skops.io.dumps(args)))
    for node in _nodes(arguments):
        node.pop("__id__", None)  # ids from another file could clash with this one's
    return {
        "__class__": function.__name__,
        "__module__": function.__module__,
        "__loader__": "ConstructorFromReduceNode",
        "content": {k: v for k, v in arguments.items() if k.startswith("__") or k == "content"},
    }


class TestModelFile:
    def test_save_and_load_without_pickle(self, fitted, data, tmp_path):
        X, y = data
        path = tmp_path / "model.pt"
        fitted.save(path)
        payload = torch.load(path, weights_only=True)  # refuses anything but plain data
        assert isinstance(payload["header"], str)
        restored = M4SurvivalEstimator.load(path)
        _assert_same_predictions(restored, fitted, X, y)
        np.testing.assert_array_equal(restored.risk_cutpoints_, fitted.risk_cutpoints_)
        assert restored.get_params() == fitted.get_params()

    @pytest.mark.parametrize(
        "params",
        [
            # numpy integers, as np.arange or scipy.stats.randint give them
            {"random_state": np.int64(0), "d_model": np.int64(8)},
            {"modalities": {"t": slice(0, 12), "pathology": slice(12, None)}},
            {"modalities": {"t": np.arange(12), "pathology": pd.RangeIndex(12, 22)}},
            {"modalities": {"t": range(12), "pathology": (12, 13, 14, *range(15, 22))}},
            {
                "modalities": {
                    "t": "^t[12]__",
                    "pathology": [f"pathology__uni2h__{k}" for k in range(10)],
                }
            },
        ],
        ids=["numpy-integers", "slices", "arrays", "ranges-and-tuples", "regex-and-names"],
    )
    def test_save_parameters_of_every_accepted_kind(self, data, tmp_path, params):
        X, y = data
        model = M4SurvivalEstimator(**TINY | params).fit(X, y)
        model.save(tmp_path / "model.pt")
        restored = M4SurvivalEstimator.load(tmp_path / "model.pt")
        np.testing.assert_array_equal(restored.predict(X), model.predict(X))
        # the parameters mean the same: a refit gives the same model
        refit = M4SurvivalEstimator(**restored.get_params()).fit(X, y)
        np.testing.assert_array_equal(refit.predict(X), model.predict(X))
        assert list(restored.modalities_) == list(model.modalities_)

    def test_save_names_a_parameter_it_cannot_store(self, fitted, tmp_path):
        model = pickle.loads(pickle.dumps(fitted))
        model.set_params(modalities={"t": 2j})
        with pytest.raises(TypeError, match=r"parameter modalities\['t'\]=2j: a complex"):
            model.save(tmp_path / "model.pt")

    @pytest.mark.parametrize("version", [1, 2])
    def test_load_older_file_formats(self, data, tmp_path, version):
        X, y = data
        # format 1 files hold networks without the linear term
        model = M4SurvivalEstimator(**TINY | {"linear_term": version > 1}).fit(X, y)
        path = tmp_path / "model.pt"
        _save_as_format(model, path, version)
        restored = M4SurvivalEstimator.load(path)
        assert restored.linear_term is (version > 1)
        assert restored.swa_fraction == 0  # those versions trained without averaging
        np.testing.assert_array_equal(restored.predict(X), model.predict(X))

    def test_unknown_file_format(self, fitted, tmp_path):
        path = tmp_path / "model.pt"
        _save_as_format(fitted, path, 99)
        with pytest.raises(ValueError, match="unsupported model file format 99"):
            M4SurvivalEstimator.load(path)

    def test_docstring_examples(self):
        (test,) = doctest.DocTestFinder().find(M4SurvivalEstimator.save)
        result = doctest.DocTestRunner().run(test)
        assert result.attempted > 0
        assert result.failed == 0


def _text(path, fitted):
    path.write_text("patient,time,event\nP001,12.0,1\n")


def _torch_dict(path, fitted):
    torch.save({"a": 1}, path)


def _state_dict(path, fitted):
    torch.save(fitted.net_.module_.state_dict(), path)


def _joblib_dump(path, fitted):
    joblib.dump(fitted, path)


def _empty(path, fitted):
    path.write_bytes(b"")


def _truncated(path, fitted):
    fitted.save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _pipeline_file(path, fitted):
    save_pipeline(fitted, path)


def _torchscript(path, fitted):
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 1)), path)


class TestModelFileErrors:
    @pytest.mark.parametrize(
        ("write", "reason"),
        [
            (_text, "torch cannot read it"),
            (_torch_dict, r"a torch file holding a dict with keys \['a'\]"),
            (_state_dict, "a torch file holding a dict with keys"),
            (_joblib_dump, "pickled Python objects, as pickle and joblib write them"),
            (_empty, "the file is empty"),
            (_truncated, "torch cannot read it"),
            (_pipeline_file, "read it with sksurvfusion.load_pipeline"),
            (_torchscript, "a TorchScript archive, as torch.jit.save writes them"),
        ],
        ids=lambda case: getattr(case, "__name__", None),
    )
    def test_not_a_model_file(self, fitted, tmp_path, write, reason):
        path = tmp_path / "file.pt"
        write(path, fitted)
        with pytest.raises(ValueError, match=reason) as info:
            M4SurvivalEstimator.load(path)
        message = str(info.value)
        assert message.startswith(f"{str(path)!r} is not a model file")
        assert "M4SurvivalEstimator.save writes" in message
        # never torch's advice to load the file unsafely, in the message or its causes
        assert "weights_only" not in _messages(info.value)

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            M4SurvivalEstimator.load(tmp_path / "absent.pt")

    def test_pickled_code_is_not_run(self, tmp_path):
        marker = tmp_path / "made-by-the-file"
        path = tmp_path / "model.pt"
        torch.save(_MakeDirectoryWhenUnpickled(marker), path)
        with pytest.raises(ValueError, match="never unpickled"):
            M4SurvivalEstimator.load(path)
        assert not marker.exists()
        # the payload is live: an unrestricted unpickler runs it
        torch.load(path, weights_only=False)
        assert marker.is_dir()

    def test_damaged_model(self, fitted, tmp_path):
        path = tmp_path / "model.pt"
        fitted.save(path)
        payload = torch.load(path, weights_only=True)
        del payload["state_dict"][next(iter(payload["state_dict"]))]
        torch.save(payload, path)
        with pytest.raises(ValueError, match="is a damaged model file"):
            M4SurvivalEstimator.load(path)

    def test_header_not_json(self, fitted, tmp_path):
        path = tmp_path / "model.pt"
        fitted.save(path)
        torch.save(torch.load(path, weights_only=True) | {"header": "{format: 3"}, path)
        with pytest.raises(ValueError, match="its header is not JSON text"):
            M4SurvivalEstimator.load(path)


class TestPipelineFile:
    def test_scaled_pipeline(self, pipeline, data, tmp_path):
        X, y = data
        save_pipeline(pipeline, tmp_path / "pipeline.skops")
        restored = load_pipeline(tmp_path / "pipeline.skops")
        assert isinstance(restored, Pipeline)
        assert restored[-1] is not pipeline[-1]
        assert restored[-1].get_params() == pipeline[-1].get_params()
        _assert_same_predictions(restored, pipeline, X, y)

    def test_modality_preprocessor_with_a_missing_modality(self, tmp_path):
        X, y = make_multimodal_survival(
            80,
            modalities={"mri": 12, "pathology": 12},
            missing_rate={"pathology": 0.3},
            random_state=1,
        )
        pipe = make_pipeline(
            ModalityPreprocessor(n_components=4).set_output(transform="pandas"),
            M4SurvivalEstimator(**TINY),
        ).fit(X, y)
        save_pipeline(pipe, tmp_path / "pipeline.skops")
        restored = load_pipeline(tmp_path / "pipeline.skops")
        assert list(restored[-1].modalities_) == list(pipe[-1].modalities_)
        _assert_same_predictions(restored, pipe, X, y)

    def test_modality_selector_and_column_transformer(self, two_models_per_modality, tmp_path):
        X, y, names = two_models_per_modality
        scale = ColumnTransformer(
            [
                (m, StandardScaler(), make_column_selector(pattern=f"^{m}__"))
                for m in ("mri", "pathology")
            ],
            verbose_feature_names_out=False,
        ).set_output(transform="pandas")
        pipe = Pipeline(
            [
                ("select", ModalitySelector(names[1])),
                ("scale", scale),
                ("model", M4SurvivalEstimator(**TINY)),
            ]
        ).fit(X, y)
        save_pipeline(pipe, tmp_path / "pipeline.skops")
        restored = load_pipeline(tmp_path / "pipeline.skops")
        _assert_same_predictions(restored, pipe, X, y)

    def test_best_estimator_of_a_grid_search(self, two_models_per_modality, tmp_path):
        X, y, names = two_models_per_modality
        pipe = Pipeline(
            [
                ("select", ModalitySelector()),
                ("scale", StandardScaler().set_output(transform="pandas")),
                ("model", M4SurvivalEstimator(**TINY | {"max_epochs": 1})),
            ]
        )
        search = GridSearchCV(pipe, {"select__models": names}, cv=KFold(2)).fit(X, y)
        save_pipeline(search.best_estimator_, tmp_path / "best.skops")
        restored = load_pipeline(tmp_path / "best.skops")
        assert restored.get_params()["select__models"] == search.best_params_["select__models"]
        _assert_same_predictions(restored, search.best_estimator_, X, y)
        with pytest.raises(ValueError, match=r"save_pipeline\(search.best_estimator_, path\)"):
            save_pipeline(search, tmp_path / "search.skops")

    def test_scikit_survival_baseline(self, data, tmp_path):
        X, y = data
        baseline = make_cox_baseline().fit(X, y)
        save_pipeline(baseline, tmp_path / "baseline.skops")
        _assert_same_predictions(load_pipeline(tmp_path / "baseline.skops"), baseline, X, y)

    def test_estimator_alone_and_shared(self, fitted, data, tmp_path):
        X, y = data
        save_pipeline({"a": fitted, "b": [fitted]}, tmp_path / "models.skops")
        restored = load_pipeline(tmp_path / "models.skops")
        assert restored["a"] is restored["b"][0]  # one object stays one object
        _assert_same_predictions(restored["a"], fitted, X, y)

    def test_unfitted_estimator_keeps_its_parameters(self, tmp_path):
        model = M4SurvivalEstimator(
            modalities={"t": slice(0, 12), "pathology": "^pathology__"}, adapter="mlp"
        )
        save_pipeline(make_pipeline(StandardScaler(), model), tmp_path / "pipeline.skops")
        restored = load_pipeline(tmp_path / "pipeline.skops")[-1]
        assert not hasattr(restored, "net_")
        assert restored.get_params() == model.get_params()

    def test_pickling_is_unchanged(self, pipeline, data, tmp_path):
        X, _ = data
        save_pipeline(pipeline, tmp_path / "pipeline.skops")
        np.testing.assert_array_equal(
            pickle.loads(pickle.dumps(pipeline)).predict(X), pipeline.predict(X)
        )

    def test_docstring_examples(self):
        result = doctest.testmod(_persistence, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted >= 2
        assert result.failed == 0


class TestPipelineFileRefusals:
    @pytest.mark.parametrize("function", ["os.system", "builtins.eval"])
    def test_altered_type(self, pipeline, tmp_path, function):
        path = tmp_path / "pipeline.skops"
        save_pipeline(pipeline, path)
        schema = _schema(path)
        scaler = _node_of_class(schema, "StandardScaler")
        scaler["__module__"], scaler["__class__"] = function.split(".")
        _rewrite(path, schema)
        with pytest.raises(ValueError, match="does not trust") as info:
            load_pipeline(path)
        assert f"[{function!r}]" in str(info.value)

    def test_code_in_the_schema_is_not_run(self, pipeline, tmp_path):
        marker = tmp_path / "made-by-the-file"
        path = tmp_path / "pipeline.skops"
        save_pipeline(pipeline, path)
        schema = _schema(path)
        steps = _node_of_class(schema, "Pipeline")["content"]["content"]["steps"]
        steps["content"][0]["content"][1] = _call_node(os.mkdir, str(marker))
        _rewrite(path, schema)
        mkdir = f"{os.mkdir.__module__}.mkdir"  # posix.mkdir on Linux
        with pytest.raises(ValueError, match=f"does not trust: \\[{mkdir!r}\\]"):
            load_pipeline(path)
        assert not marker.exists()
        # the payload is live: skops builds it once told to trust it
        skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
        assert marker.is_dir()

    def test_code_in_a_model_file_is_not_run(self, pipeline, tmp_path):
        marker = tmp_path / "made-by-the-file"
        path = tmp_path / "pipeline.skops"
        save_pipeline(pipeline, path)
        stored = _node_of_class(_schema(path), "_StoredEstimator")
        entry = stored["content"]["content"]["model_file"]["file"]
        payload = io.BytesIO()
        torch.save(_MakeDirectoryWhenUnpickled(marker), payload)
        _rewrite(path, entries={entry: payload.getvalue()})
        with pytest.raises(ValueError, match=r"M4SurvivalEstimator in .* never unpickled"):
            load_pipeline(path)
        assert not marker.exists()

    def test_renamed_pickle(self, tmp_path):
        marker = tmp_path / "made-by-the-file"
        path = tmp_path / "pipeline.skops"
        path.write_bytes(pickle.dumps(_MakeDirectoryWhenUnpickled(marker)))
        with pytest.raises(ValueError, match="pickled Python objects") as info:
            load_pipeline(path)
        assert str(info.value).startswith(f"{str(path)!r} is not a pipeline file")
        assert not marker.exists()
        pickle.loads(path.read_bytes())  # the payload is live
        assert marker.is_dir()

    @pytest.mark.parametrize(
        ("write", "reason"),
        [
            (lambda path, fitted: path.write_text("time,event\n"), "not a zip archive"),
            (lambda path, fitted: path.write_bytes(b""), "the file is empty"),
            (
                lambda path, fitted: fitted.save(path),
                "read a model file with M4SurvivalEstimator.load",
            ),
            (
                lambda path, fitted: zipfile.ZipFile(path, "w").close(),
                "without skops' schema.json",
            ),
        ],
        ids=["text", "empty", "model-file", "other-zip"],
    )
    def test_not_a_pipeline_file(self, fitted, tmp_path, write, reason):
        path = tmp_path / "file.skops"
        write(path, fitted)
        with pytest.raises(ValueError, match=reason) as info:
            load_pipeline(path)
        assert f"{str(path)!r} is not a pipeline file" in str(info.value)
        assert "sksurvfusion.save_pipeline writes" in str(info.value)

    def test_truncated_pipeline_file(self, pipeline, tmp_path):
        path = tmp_path / "pipeline.skops"
        save_pipeline(pipeline, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(ValueError, match="not a zip archive: damaged, truncated"):
            load_pipeline(path)

    def test_damaged_schema(self, pipeline, tmp_path):
        path = tmp_path / "pipeline.skops"
        save_pipeline(pipeline, path)
        _rewrite(path, entries={"schema.json": b'{"protocol": 2, '})
        with pytest.raises(ValueError, match="its skops schema is damaged"):
            load_pipeline(path)

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            load_pipeline(tmp_path / "absent.skops")

    def test_own_types_need_trust(self, data, tmp_path):
        X, y = data
        pipe = make_pipeline(_OwnScaler(), M4SurvivalEstimator(**TINY)).fit(X, y)
        path = tmp_path / "pipeline.skops"
        own = f"{_OwnScaler.__module__}._OwnScaler"
        with pytest.warns(UserWarning, match=f"only when they are passed in trusted=: \\['{own}'"):
            save_pipeline(pipe, path)
        with pytest.raises(ValueError, match=f"does not trust: \\['{own}'\\]"):
            load_pipeline(path)
        for trusted in ([own], [_OwnScaler]):
            _assert_same_predictions(load_pipeline(path, trusted=trusted), pipe, X, y)
        with pytest.raises(TypeError, match="trusted must be a list of types"):
            load_pipeline(path, trusted=True)  # skops once read True as trusting every type

    def test_without_skops(self, pipeline, tmp_path, monkeypatch):
        monkeypatch.setitem(sys.modules, "skops.io", None)
        for call in (
            lambda: save_pipeline(pipeline, tmp_path / "pipeline.skops"),
            lambda: load_pipeline(tmp_path / "pipeline.skops"),
        ):
            with pytest.raises(ImportError, match=r"pip install 'sksurvfusion\[skops\]'"):
                call()
