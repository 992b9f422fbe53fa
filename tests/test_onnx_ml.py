"""The ai.onnx.ml domain, compiled: scikit-learn models converted by skl2onnx, and the ops
one by one, against onnxruntime."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxc
from onnxc.runtime.hosted import HostedSession

ort = pytest.importorskip("onnxruntime")


def _ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _same(got, want, rtol=1e-5, atol=1e-5):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape, (g.shape, w.shape)
        if w.dtype == object or w.dtype.kind in "iub":
            assert g.tolist() == w.tolist()
        else:
            assert g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def _sklearn_models():
    from sklearn.datasets import load_iris, make_regression
    from sklearn.ensemble import (GradientBoostingClassifier, RandomForestClassifier,
                                  RandomForestRegressor)
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    xr, yr = make_regression(120, 6, random_state=0)
    xr = xr.astype(np.float32)
    names = np.array(["setosa", "versicolor", "virginica"])
    return {
        "scaler_logistic": (make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)),
                            x, y),
        "scaler_logistic_binary": (make_pipeline(StandardScaler(),
                                                 LogisticRegression(max_iter=300)), x, y == 1),
        "logistic_string_labels": (LogisticRegression(max_iter=300), x, names[y]),
        "decision_tree_classifier": (DecisionTreeClassifier(max_depth=5, random_state=0), x, y),
        "decision_tree_binary": (DecisionTreeClassifier(max_depth=4, random_state=0), x, y == 2),
        "random_forest_classifier": (RandomForestClassifier(n_estimators=6, max_depth=5,
                                                            random_state=0), x, y),
        "decision_tree_regressor": (DecisionTreeRegressor(max_depth=6, random_state=0), xr, yr),
        "random_forest_regressor": (RandomForestRegressor(n_estimators=6, max_depth=5,
                                                          random_state=0), xr, yr),
        "linear_regression": (LinearRegression(), xr, yr),
        "imputer_gradient_boosting_binary": (
            make_pipeline(SimpleImputer(), GradientBoostingClassifier(n_estimators=8,
                                                                      max_depth=3)),
            np.where(np.arange(x.size).reshape(x.shape) % 7 == 0, np.nan, x).astype(np.float32),
            y == 2),
        "one_hot_logistic": (make_pipeline(OneHotEncoder(handle_unknown="ignore"),
                                           LogisticRegression(max_iter=300)),
                             (x * 2).astype(np.int64), y),
    }


@pytest.fixture(scope="module")
def sklearn_models():
    pytest.importorskip("sklearn")
    pytest.importorskip("skl2onnx")
    return _sklearn_models()


SKLEARN_CASES = ["scaler_logistic", "scaler_logistic_binary", "logistic_string_labels",
                 "decision_tree_classifier", "decision_tree_binary", "random_forest_classifier",
                 "decision_tree_regressor", "random_forest_regressor", "linear_regression",
                 "imputer_gradient_boosting_binary", "one_hot_logistic"]


@pytest.mark.parametrize("name", SKLEARN_CASES)
def test_sklearn_model_vs_onnxruntime(sklearn_models, name):
    from skl2onnx import to_onnx

    estimator, x, y = sklearn_models[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(x, y)
        options = {"zipmap": False} if hasattr(estimator, "predict_proba") else None
        model = to_onnx(estimator, x[:1], options=options,
                        target_opset={"": 17, "ai.onnx.ml": 3})
    session = onnxc.compile(model)
    feeds = {model.graph.input[0].name: x[::3]}
    _same(session.run(None, feeds), _ort(model, feeds), rtol=1e-4, atol=1e-5)
    # numeric models are compiled code only; string labels add one host lookup
    host = session.host_ops if isinstance(session, HostedSession) else []
    assert host == (["LabelEncoder"] if name == "logistic_string_labels" else [])


def _one(op, attrs, x, out_type=TensorProto.FLOAT, extra=(), ml=3):
    ins = [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(x.dtype),
                                         list(x.shape))]
    ins += [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype),
                                          list(v.shape)) for n, v in extra]
    node = helper.make_node(op, [i.name for i in ins], ["y"], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph([node], "g", ins, [helper.make_tensor_value_info("y", out_type,
                                                                               None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("ai.onnx.ml", ml)])


@pytest.mark.parametrize("op,attrs", [
    ("Normalizer", {"norm": "L1"}), ("Normalizer", {"norm": "L2"}),
    ("Normalizer", {"norm": "MAX"}),
    ("Scaler", {"offset": [0.5, -1.0, 2.0, 0.0], "scale": [2.0, 0.5, 1.0, 3.0]}),
    ("Binarizer", {"threshold": 0.25}),
])
def test_ml_elementwise_ops_vs_onnxruntime(op, attrs):
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    x[1] = 0  # a zero norm
    x[2, :3], x[2, 3] = -1, 0  # MAX: the largest element is 0
    model = _one(op, attrs, x)
    _same(onnxc.compile(model).run(None, {"x": x}), _ort(model, {"x": x}))


def test_array_feature_extractor_and_numeric_label_encoder_vs_onnxruntime():
    x = np.random.default_rng(3).standard_normal((4, 6)).astype(np.float32)
    idx = np.array([5, 0, 2, 2], dtype=np.int64)
    model = _one("ArrayFeatureExtractor", {}, x, extra=[("i", idx)])
    feeds = {"x": x, "i": idx}
    _same(onnxc.compile(model).run(None, feeds), _ort(model, feeds))
    codes = np.array([[3, 7, 1], [9, 3, 3]], dtype=np.int64)
    model = _one("LabelEncoder", {"keys_int64s": [1, 3, 9], "values_floats": [0.5, 1.5, 2.5],
                                  "default_float": -4.0}, codes, ml=2)
    session = onnxc.compile(model)
    assert not isinstance(session, HostedSession)  # numeric: compiled
    _same(session.run(None, {"x": codes}), _ort(model, {"x": codes}))


def test_tree_ensemble_v5_vs_onnxruntime():
    """Two trees, every comparison mode, missing values that go the true way, AVERAGE."""
    attrs = dict(
        n_targets=2, aggregate_function=0, tree_roots=[0, 3],
        nodes_featureids=[0, 1, 2, 1, 0], nodes_modes=np.array([0, 2, 1, 3, 4], np.uint8),
        nodes_splits=np.array([0.0, 0.5, -0.5, 0.1, 1.0], np.float32),
        nodes_truenodeids=[1, 0, 2, 4, 3], nodes_trueleafs=[0, 1, 1, 0, 1],
        nodes_falsenodeids=[2, 1, 3, 5, 4], nodes_falseleafs=[0, 1, 1, 1, 1],
        nodes_missing_value_tracks_true=[1, 0, 0, 1, 0],
        leaf_targetids=[0, 1, 0, 1, 0, 1], leaf_weights=np.array(
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], np.float32))
    attrs = {k: (helper.make_tensor(k, TensorProto.UINT8 if v.dtype == np.uint8 else
                                    TensorProto.FLOAT, v.shape, v.tolist())
                 if isinstance(v, np.ndarray) else v) for k, v in attrs.items()}
    x = np.random.default_rng(4).standard_normal((16, 3)).astype(np.float32)
    x[::5, 0] = np.nan
    x[3, 1] = 0.5
    model = _one("TreeEnsemble", attrs, x, ml=5)
    _same(onnxc.compile(model).run(None, {"x": x}), _ort(model, {"x": x}))


def test_zipmap_is_refused_with_the_fix():
    x = np.zeros((2, 3), np.float32)
    model = _one("ZipMap", {"classlabels_int64s": [0, 1, 2]}, x)
    with pytest.raises(onnxc.UnsupportedOpError, match="zipmap"):
        onnxc.compile(model)


def test_imputer_feature_vectorizer_one_hot_vs_onnxruntime():
    x = np.random.default_rng(5).standard_normal((4, 3)).astype(np.float32)
    x[1, 2] = x[3, 0] = np.nan
    model = _one("Imputer", {"replaced_value_float": float("nan"),
                             "imputed_value_floats": [1.0, 2.0, 3.0]}, x)
    _same(onnxc.compile(model).run(None, {"x": x}), _ort(model, {"x": x}))
    ints = np.array([[1, 0, 5], [2, 1, 1]], dtype=np.int64)
    model = _one("FeatureVectorizer", {"inputdimensions": [3, 3]}, ints,
                 extra=[("z", ints * 2)])
    feeds = {"x": ints, "z": ints * 2}
    _same(onnxc.compile(model).run(None, feeds), _ort(model, feeds))
    model = _one("OneHotEncoder", {"cats_int64s": [0, 1, 5, 7]}, ints)
    _same(onnxc.compile(model).run(None, {"x": ints}), _ort(model, {"x": ints}))
    words = np.array([["b", "a"], ["c", "zz"]], dtype=object)
    model = _one("OneHotEncoder", {"cats_strings": ["a", "b", "c"]}, words)
    session = onnxc.compile(model)
    assert session.host_ops == ["OneHotEncoder"]
    _same(session.run(None, {"x": words}), _ort(model, {"x": words}))


@pytest.mark.parametrize("kernel", ["rbf", "linear", "poly", "sigmoid", "one_class"])
def test_svm_regressor_vs_onnxruntime(kernel):
    pytest.importorskip("sklearn")
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.svm import SVR, OneClassSVM

    rng = np.random.default_rng(6)
    x = rng.standard_normal((40, 4)).astype(np.float32)
    estimator = OneClassSVM(gamma=0.5) if kernel == "one_class" else \
        SVR(kernel=kernel, gamma=0.2, coef0=0.5, degree=3)
    estimator.fit(x, x[:, 0] * 2 - x[:, 1] ** 2)
    model = to_onnx(estimator, x[:1], target_opset={"": 17, "ai.onnx.ml": 3})
    _same(onnxc.compile(model).run(None, {"X": x}), _ort(model, {"X": x}), rtol=1e-4,
          atol=1e-4)


@pytest.mark.parametrize("classes,kernel", [(3, "rbf"), (2, "poly"), (4, "linear")])
def test_svm_classifier_vs_onnxruntime(classes, kernel):
    """One-vs-one votes and pair scores (skl2onnx adds its one-vs-rest post-processing)."""
    pytest.importorskip("sklearn")
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.svm import SVC

    x = np.random.default_rng(7).standard_normal((50, 4)).astype(np.float32)
    y = np.digitize(x[:, 0] + 0.5 * x[:, 1], np.linspace(-1, 1, classes - 1))
    estimator = SVC(kernel=kernel, gamma=0.3, coef0=0.5).fit(x, y)
    model = to_onnx(estimator, x[:1], options={"zipmap": False},
                    target_opset={"": 17, "ai.onnx.ml": 3})
    _same(onnxc.compile(model).run(None, {"X": x}), _ort(model, {"X": x}), rtol=1e-4,
          atol=1e-4)
