import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sksurvfusion import M4SurvivalEstimator
from sksurvfusion.modality import (
    ModalitySelector,
    embedding_frame,
    modality_mask,
    resolve_modalities,
)


@pytest.fixture
def frame():
    columns = [
        "mri__medimageinsight__0",
        "mri__medimageinsight__1",
        "mri__biomedclip__0",
        "path__uni2h__0",
        "path__gigapath__0",
        "clinical__age",
    ]
    return pd.DataFrame(np.arange(12.0).reshape(2, 6), columns=columns)


class TestResolveModalities:
    def test_prefix_grouping_keeps_first_appearance_order(self, frame):
        resolved = resolve_modalities(None, frame.columns.to_numpy(), frame.shape[1])
        assert list(resolved) == ["mri", "path", "clinical"]
        np.testing.assert_array_equal(resolved["mri"], [0, 1, 2])
        np.testing.assert_array_equal(resolved["clinical"], [5])

    def test_no_prefix_is_one_modality(self):
        resolved = resolve_modalities(None, None, 4)
        assert list(resolved) == ["features"]
        np.testing.assert_array_equal(resolved["features"], np.arange(4))

    def test_mixed_prefix_is_an_error(self):
        names = np.array(["a__0", "b"], dtype=object)
        with pytest.raises(ValueError, match=r"\['b'\] have no '<modality>__' prefix"):
            resolve_modalities(None, names, 2)

    def test_dict_forms(self, frame):
        spec = {
            "path": r"^path__",
            "first": [0, 1],
            "named": ["mri__biomedclip__0"],
            "last": slice(5, 6),
        }
        resolved = resolve_modalities(spec, frame.columns.to_numpy(), frame.shape[1])
        assert list(resolved) == ["path", "first", "named", "last"]
        np.testing.assert_array_equal(resolved["path"], [3, 4])
        np.testing.assert_array_equal(resolved["named"], [2])
        np.testing.assert_array_equal(resolved["last"], [5])

    @pytest.mark.parametrize(
        ("spec", "match"),
        [
            ({"a": [0], "b": [0, 1]}, "in both modality 'a' and modality 'b'"),
            ({"a": ["nope"]}, r"modality 'a' names columns not in X: \['nope'\]"),
            ({"a": [7]}, r"column positions \[7\] outside"),
            ({"a": "^zzz"}, "selects no column"),
            ({}, "non-empty dict"),
        ],
    )
    def test_bad_specs(self, frame, spec, match):
        with pytest.raises(ValueError, match=match):
            resolve_modalities(spec, frame.columns.to_numpy(), frame.shape[1])

    def test_names_need_a_frame(self):
        with pytest.raises(ValueError, match="needs X with column names"):
            resolve_modalities({"a": "^x"}, None, 3)


TWO_MODALITIES = {"a": np.array([0, 1]), "b": np.array([2])}


class TestModalityMask:
    def test_all_nan_block_is_missing(self):
        X = np.array([[1.0, 2.0, 3.0], [np.nan, np.nan, 3.0], [1.0, 2.0, np.nan]])
        np.testing.assert_array_equal(
            modality_mask(X, TWO_MODALITIES), [[True, True], [False, True], [True, False]]
        )

    def test_partial_nan_names_modality_and_rows(self):
        X = np.array([[1.0, 2.0, 3.0], [np.nan, 2.0, 3.0]])
        with pytest.raises(ValueError, match=r"modality 'a' has NaN in only some .* rows \[1\]"):
            modality_mask(X, TWO_MODALITIES)

    def test_infinite_values(self):
        X = np.array([[1.0, 2.0, np.inf]])
        with pytest.raises(ValueError, match=r"modality 'b' has infinite values in rows \[0\]"):
            modality_mask(X, TWO_MODALITIES)

    def test_row_without_any_modality(self):
        X = np.array([[1.0, 2.0, 3.0], [np.nan, np.nan, np.nan]])
        with pytest.raises(ValueError, match=r"rows \[1\] have every modality missing"):
            modality_mask(X, TWO_MODALITIES)


class TestModalitySelector:
    def test_keeps_chosen_model_and_drops_none(self, frame):
        selector = ModalitySelector({"mri": "biomedclip", "path": None}).fit(frame)
        out = selector.transform(frame)
        assert out.columns.tolist() == ["mri__biomedclip__0", "clinical__age"]
        assert selector.get_feature_names_out().tolist() == out.columns.tolist()
        assert selector.available_models_["path"] == ["uni2h", "gigapath"]

    def test_none_keeps_everything(self, frame):
        pd.testing.assert_frame_equal(ModalitySelector().fit_transform(frame), frame)

    def test_unknown_modality_lists_known(self, frame):
        with pytest.raises(ValueError, match=r"unknown modalities \['ct'\]; X has"):
            ModalitySelector({"ct": "x"}).fit(frame)

    def test_unknown_model_lists_models(self, frame):
        with pytest.raises(
            ValueError, match=r"'path' has no model 'uni'; its models are \['uni2h', 'gigapath'\]"
        ):
            ModalitySelector({"path": "uni"}).fit(frame)

    def test_needs_a_frame(self, frame):
        with pytest.raises(TypeError, match="pandas DataFrame"):
            ModalitySelector().fit(frame.to_numpy())
        fitted = ModalitySelector().fit(frame)
        with pytest.raises(TypeError, match=r"pandas DataFrame.*got ndarray"):
            fitted.transform(frame.to_numpy())

    def test_composes_with_pandas_column_transformer_in_grid_search(self, frame):
        X = pd.DataFrame(np.random.default_rng(0).normal(size=(20, 6)), columns=frame.columns)
        per_modality = ColumnTransformer(
            [
                (m, StandardScaler(), make_column_selector(pattern=f"^{m}__"))
                for m in ("mri", "path", "clinical")
            ],
            verbose_feature_names_out=False,
        ).set_output(transform="pandas")
        pipe = make_pipeline(ModalitySelector(), per_modality)
        grid = [{"mri": "medimageinsight", "path": "uni2h"}, {"mri": "biomedclip", "path": None}]
        out = pipe.set_params(modalityselector__models=grid[1]).fit_transform(X)
        assert out.columns.tolist() == ["mri__biomedclip__0", "clinical__age"]


class TestEmbeddingFrame:
    def test_columns_index_and_dtype(self):
        values = np.arange(6, dtype=np.float32).reshape(3, 2)
        frame = embedding_frame(values, "t1", "medimageinsight", index=["A", "B", "C"])
        assert frame.columns.tolist() == ["t1__medimageinsight__0", "t1__medimageinsight__1"]
        assert frame.index.tolist() == ["A", "B", "C"]
        assert (frame.dtypes == np.float32).all()
        np.testing.assert_array_equal(frame.to_numpy(), values)
        assert embedding_frame(values, "clinical").columns.tolist() == [
            "clinical__0",
            "clinical__1",
        ]

    def test_patients_without_a_row_are_missing_for_the_estimator(self):
        slides = embedding_frame(
            np.ones((2, 3)), "pathology", "uni2h", index=["C", "A"], patients=["A", "B", "C"]
        )
        mri = embedding_frame(np.zeros((3, 2)), "mri", index=["A", "B", "C"])
        X = pd.concat([mri, slides], axis=1)
        assert X.index.tolist() == ["A", "B", "C"]
        modalities = resolve_modalities(None, np.asarray(X.columns), X.shape[1])
        mask = modality_mask(X.to_numpy(), modalities)
        np.testing.assert_array_equal(mask, [[True, True], [True, False], [True, True]])

    def test_frames_feed_the_estimator(self):
        rng = np.random.default_rng(0)
        ids = [f"P{i}" for i in range(40)]
        X = pd.concat(
            [
                embedding_frame(rng.normal(size=(40, 4)), "mri", "m", index=ids),
                embedding_frame(
                    rng.normal(size=(30, 3)), "pathology", "p", index=ids[:30], patients=ids
                ),
            ],
            axis=1,
        )
        y = np.array(
            list(zip(rng.random(40) < 0.7, rng.exponential(10, 40), strict=True)),
            dtype=[("event", bool), ("time", float)],
        )
        model = M4SurvivalEstimator(d_model=8, encoder_hidden=8, max_epochs=1, random_state=0)
        assert list(model.fit(X, y).modalities_) == ["mri", "pathology"]

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"values": np.ones(3), "modality": "t1"}, "must be 2-D"),
            ({"values": np.ones((2, 2)), "modality": "t1__x"}, "modality must be"),
            ({"values": np.ones((2, 2)), "modality": "t1", "model": ""}, "model must be"),
            ({"values": np.ones((2, 2)), "modality": "t1", "index": ["A"]}, "1 IDs for 2 rows"),
            (
                {"values": np.ones((2, 2)), "modality": "t1", "index": ["A", "A"]},
                r"more than once \(A\)",
            ),
        ],
    )
    def test_bad_input_is_named(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            embedding_frame(**kwargs)
