"""Host functions (README: host functions): string tensors, regex, image decoding and the
runtime that runs them between compiled partitions, checked against onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxc
from onnxc.runtime.hosted import HostedSession

ML = helper.make_opsetid("ai.onnx.ml", 3)


def _model(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), ML])


def _ort(model, feeds):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape, (g.shape, w.shape)
        if w.dtype == object:
            assert g.dtype == object and g.tolist() == w.tolist()
        else:
            assert g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def mixed_model() -> onnx.ModelProto:
    """strings -> host LabelEncoder -> compiled math; compiled ArgMax -> host LabelEncoder ->
    host StringConcat; Equal on strings; RegexFullMatch: levels 0, 1 and 2 of the split."""
    names = ["cat", "dog", "emu"]
    nodes = [
        helper.make_node("LabelEncoder", ["words"], ["ids"], domain="ai.onnx.ml",
                         keys_strings=names, values_int64s=[10, 20, 30], default_int64=-1),
        helper.make_node("Cast", ["ids"], ["idf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["idf", "x"], ["scaled"]),
        helper.make_node("ArgMax", ["scaled"], ["best"], axis=1, keepdims=0),
        helper.make_node("LabelEncoder", ["best"], ["best_name"], domain="ai.onnx.ml",
                         keys_int64s=[0, 1, 2], values_strings=names, default_string="?"),
        helper.make_node("StringConcat", ["prefix", "best_name"], ["tagged"]),
        helper.make_node("Equal", ["words", "dog"], ["is_dog"]),
        helper.make_node("RegexFullMatch", ["tagged"], ["match"], pattern=r"best: [cd]\w+"),
        helper.make_node("ReduceSum", ["scaled"], ["total"], keepdims=0),
    ]
    inputs = [helper.make_tensor_value_info("words", TensorProto.STRING, ["n", 3]),
              helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])]
    outputs = [helper.make_tensor_value_info(n, t, None) for n, t in
               [("tagged", TensorProto.STRING), ("is_dog", TensorProto.BOOL),
                ("match", TensorProto.BOOL), ("total", TensorProto.FLOAT),
                ("scaled", TensorProto.FLOAT)]]
    inits = [helper.make_tensor("prefix", TensorProto.STRING, [], [b"best: "]),
             helper.make_tensor("dog", TensorProto.STRING, [], [b"dog"])]
    return _model(nodes, inputs, outputs, inits)


def test_mixed_host_and_compiled_model_matches_onnxruntime():
    model = mixed_model()
    session = onnxc.compile(model)
    assert isinstance(session, HostedSession)
    assert sorted(session.host_ops) == ["Equal", "LabelEncoder", "LabelEncoder",
                                        "RegexFullMatch", "StringConcat"]
    kinds = [s.info["kind"] for s in session.stages]
    # level 0: LabelEncoder(words), Equal; level 1: the compiled part; then the host chain
    assert kinds == ["host", "host", "compiled", "host", "host", "host"], kinds
    rng = np.random.default_rng(0)
    for n in (4, 1, 6):  # new shapes compile new specializations of the compiled parts
        words = rng.choice(["cat", "dog", "emu", "yak"], size=(n, 3)).astype(object)
        feeds = {"words": words, "x": rng.standard_normal((n, 3)).astype(np.float32)}
        _same(session.run(None, feeds), _ort(model, feeds))
    assert session.get_inputs()[0].type == "tensor(string)"
    assert [o.type for o in session.get_outputs()][:2] == ["tensor(string)", "tensor(bool)"]
    # numpy str arrays are accepted like object arrays, as onnxruntime does
    got = session.run(["is_dog"], {"words": np.array([["dog", "cat", "x"]]),
                                   "x": np.ones((1, 3), np.float32)})
    assert got[0].tolist() == [[True, False, False]]


def test_string_feed_errors_and_unsupported_uses():
    session = onnxc.compile(mixed_model())
    with pytest.raises(onnxc.InputError, match="string tensor"):
        session.run(None, {"words": np.zeros((1, 3)), "x": np.ones((1, 3), np.float32)})
    with pytest.raises(onnxc.InputError, match="missing"):
        session.run(None, {"x": np.ones((1, 3), np.float32)})
    with pytest.raises(onnxc.OnnxcError, match="host functions"):
        session.save("/tmp/never.onnxc")
    with pytest.raises(onnxc.CompileError, match="host"):
        onnxc.compile(mixed_model(), devices=["cpu:0"])
    fixed = onnxc.compile(mixed_model(), input_shapes={"words": [2, 3], "x": [2, 3]})
    assert fixed.get_inputs()[0].shape == [2, 3]
    with pytest.raises(onnxc.InputError, match="expects shape"):
        fixed.run(None, {"words": np.array([["a", "b", "c"]], dtype=object),
                         "x": np.ones((1, 3), np.float32)})
    # a string tensor reaching an op without a host function is refused, naming the node
    model = _model([helper.make_node("Transpose", ["s"], ["t"], name="flip")],
                   [helper.make_tensor_value_info("s", TensorProto.STRING, [2, 3])],
                   [helper.make_tensor_value_info("t", TensorProto.STRING, [3, 2])])
    with pytest.raises(onnxc.UnsupportedOpError, match="flip"):
        onnxc.compile(model)


@pytest.mark.parametrize("attrs", [
    dict(case_change_action="UPPER", is_case_sensitive=0, stopwords=["the", "A"]),
    dict(case_change_action="LOWER", is_case_sensitive=1, stopwords=["The"]),
    dict(case_change_action="NONE"),
])
def test_string_normalizer_vs_onnxruntime(attrs):
    model = _model([helper.make_node("StringNormalizer", ["s"], ["t"], locale="C.UTF-8", **attrs)],
                   [helper.make_tensor_value_info("s", TensorProto.STRING, [1, 6])],
                   [helper.make_tensor_value_info("t", TensorProto.STRING, None)])
    feeds = {"s": np.array([["The", "quick", "a", "Fox", "the", "ÉTÉ"]], dtype=object)}
    _same(onnxc.compile(model).run(None, feeds), _ort(model, feeds))


@pytest.mark.parametrize("delimiter,maxsplit", [(None, None), (",", None), (",", 1),
                                                 ("ab", None)])
def test_string_split_vs_onnxruntime(delimiter, maxsplit):
    attrs = {k: v for k, v in [("delimiter", delimiter), ("maxsplit", maxsplit)]
             if v is not None}
    model = _model([helper.make_node("StringSplit", ["s"], ["parts", "n"], **attrs)],
                   [helper.make_tensor_value_info("s", TensorProto.STRING, [2, 2])],
                   [helper.make_tensor_value_info("parts", TensorProto.STRING, None),
                    helper.make_tensor_value_info("n", TensorProto.INT64, None)])
    feeds = {"s": np.array([["a,b,,c", "  x  y "], ["", "1ab2ab3"]], dtype=object)}
    _same(onnxc.compile(model).run(None, feeds), _ort(model, feeds))


def test_tfidf_vectorizer_modes_vs_onnxruntime():
    for mode in ("TF", "IDF", "TFIDF"):
        node = helper.make_node(
            "TfIdfVectorizer", ["x"], ["y"], mode=mode, min_gram_length=1,
            max_gram_length=2, max_skip_count=1, ngram_counts=[0, 3],
            ngram_indexes=[0, 1, 2, 3, 4], pool_strings=["a", "b", "c", "a", "b", "b", "c"],
            weights=[0.5, 1.0, 2.0, 3.0, 4.0])
        model = _model([node], [helper.make_tensor_value_info("x", TensorProto.STRING, [2, 5])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        feeds = {"x": np.array([["a", "b", "c", "a", "b"], ["b", "x", "c", "c", "a"]],
                               dtype=object)}
        _same(onnxc.compile(model).run(None, feeds), _ort(model, feeds))


def test_image_decoder_with_compiled_postprocessing():
    """Pillow decodes; the compiled part that follows normalizes the pixels."""
    PIL = pytest.importorskip("PIL.Image")
    import io

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PIL.fromarray(pixels).save(buf, format="PNG")
    nodes = [helper.make_node("ImageDecoder", ["data"], ["img"], pixel_format="BGR"),
             helper.make_node("Cast", ["img"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["f", "k"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("data", TensorProto.UINT8, ["b"])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                   [helper.make_tensor("k", TensorProto.FLOAT, [], [255.0])])
    data = np.frombuffer(buf.getvalue(), dtype=np.uint8)
    (got,) = onnxc.compile(model).run(None, {"data": data})
    np.testing.assert_allclose(got, pixels[:, :, ::-1] / np.float32(255), rtol=1e-6)
    with pytest.raises(onnxc.OnnxcError, match="ImageDecoder"):
        onnxc.compile(model).run(None, {"data": np.zeros(10, np.uint8)})


def test_host_node_with_an_unused_optional_output():
    nodes = [helper.make_node("StringSplit", ["s"], ["parts", ""], delimiter="-"),
             helper.make_node("StringConcat", ["parts", "parts"], ["twice"])]
    model = _model(nodes, [helper.make_tensor_value_info("s", TensorProto.STRING, [2])],
                   [helper.make_tensor_value_info("twice", TensorProto.STRING, None)])
    feeds = {"s": np.array(["a-b", "c"], dtype=object)}
    (got,) = onnxc.compile(model).run(None, feeds)
    assert got.tolist() == [["aa", "bb"], ["cc", ""]]
