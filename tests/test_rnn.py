"""RNN, LSTM and GRU against onnxruntime, with random weights.

Cases cover every direction and layout, sequence lengths 1 and 7, batch 1 and 3, per-batch
sequence_lens (constant and fed at run time), initial states, peepholes, clip, GRU's
linear_before_reset, LSTM's input_forget and the optional activation functions. onnxruntime runs
only layout 0, so a layout-1 model is checked against its time-major twin, outputs transposed.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc
from onnxc.ir.errors import UnsupportedOpError

ort = pytest.importorskip("onnxruntime")

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
SLOTS = {"RNN": 1, "LSTM": 3, "GRU": 2}  # activation functions per direction
OUTPUTS = {"RNN": ["Y", "Y_h"], "GRU": ["Y", "Y_h"], "LSTM": ["Y", "Y_h", "Y_c"]}
TO_BATCH_MAJOR = {"Y": (2, 0, 1, 3), "Y_h": (1, 0, 2), "Y_c": (1, 0, 2)}


def _arrays(kind: str, direction: str, seq: int, batch: int, *, size: int = 5, hidden: int = 4,
            bias=True, lens=None, init=True, peep=False, scale=1.0, seed=0) -> dict:
    """Time-major inputs in ONNX input order; None marks an absent optional input."""
    rng = np.random.default_rng(seed)
    d, g = (2 if direction == "bidirectional" else 1), GATES[kind]

    def uniform(*shape):
        return rng.uniform(-scale, scale, shape).astype(np.float32)

    arrays = {"X": rng.standard_normal((seq, batch, size)).astype(np.float32),
              "W": uniform(d, g * hidden, size), "R": uniform(d, g * hidden, hidden),
              "B": uniform(d, 2 * g * hidden) if bias else None,
              "sequence_lens": None if lens is None else np.array(lens, dtype=np.int32),
              "initial_h": rng.standard_normal((d, batch, hidden)).astype(np.float32)
              if init else None}
    if kind == "LSTM":
        arrays["initial_c"] = rng.standard_normal((d, batch, hidden)).astype(np.float32) \
            if init else None
        arrays["P"] = uniform(d, 3 * hidden) if peep else None
    return arrays


def _model(kind: str, arrays: dict, layout: int, fed=("X",), outputs=None, **attrs):
    """A one-node model; the inputs named in ``fed`` are graph inputs, the rest initializers."""
    arrays = dict(arrays)
    if layout:
        for name in ("X", "initial_h", "initial_c"):
            if arrays.get(name) is not None:
                arrays[name] = arrays[name].transpose(1, 0, 2)
    names = [k if v is not None else "" for k, v in arrays.items()]
    while names[-1] == "":
        names.pop()
    outs = [o if outputs is None or o in outputs else "" for o in OUTPUTS[kind]]
    while outs[-1] == "":
        outs.pop()
    hidden = arrays["R"].shape[-1]
    node = helper.make_node(kind, names, outs, hidden_size=hidden, layout=layout, **attrs)
    feeds = {k: arrays[k] for k in names if k in fed}
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for k, v in feeds.items()]
    out_info = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs if o]
    inits = [numpy_helper.from_array(arrays[k], k) for k in names if k and k not in fed]
    graph = helper.make_graph([node], "rnn", ins, out_info, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    return model, feeds, [o for o in outs if o]


def _reference(kind: str, arrays: dict, layout: int, fed, outputs, feeds=None, **attrs):
    model, ref_feeds, names = _model(kind, arrays, 0, fed, outputs, **attrs)
    ref_feeds.update(feeds or {})
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    results = session.run(None, ref_feeds)
    if layout:
        results = [r.transpose(TO_BATCH_MAJOR[n]) for r, n in zip(results, names)]
    return results


def _check(kind: str, arrays: dict, layout: int = 0, fed=("X",), outputs=None, **attrs):
    """Compile with onnxc, run, and compare every output with onnxruntime."""
    model, feeds, names = _model(kind, arrays, layout, fed, outputs, **attrs)
    got = onnxc.compile(model).run(None, feeds)
    want = _reference(kind, arrays, layout, fed, outputs, **attrs)
    assert len(got) == len(want) == len(names)
    for name, a, b in zip(names, got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("seq", [1, 7])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_matches_onnxruntime(kind: str, direction: str, layout: int, seq: int,
                             batch: int) -> None:
    """Batch 3 carries every optional input (mixed sequence_lens, states, peepholes); batch 1
    none, so both the masked and the plain unrolling run."""
    full = batch == 3
    lens = [seq, max(seq // 2, 1), 1] if full else None
    arrays = _arrays(kind, direction, seq, batch, bias=full, lens=lens, init=full, peep=full)
    _check(kind, arrays, layout, direction=direction)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_sequence_lens_fed_at_run_time(kind: str, direction: str) -> None:
    """One compiled model serves any lengths: the masks are computed at run time."""
    arrays = _arrays(kind, direction, 7, 3, lens=[7, 3, 1], peep=True)
    model, feeds, names = _model(kind, arrays, 0, fed=("X", "sequence_lens"),
                                 direction=direction)
    session = onnxc.compile(model)
    # onnxruntime leaves Y_h of an empty RNN sequence undefined; LSTM/GRU give zeros.
    for lens in ([7, 3, 1], [2, 7, 4], [1, 1, 1] if kind == "RNN" else [0, 5, 7]):
        feeds["sequence_lens"] = np.array(lens, dtype=np.int32)
        want = _reference(kind, arrays, 0, ("X", "sequence_lens"), None, feeds=feeds,
                          direction=direction)
        for name, a, b in zip(names, session.run(None, feeds), want):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=f"{name} {lens}")
    assert len(session.executables) == 1


@pytest.mark.parametrize("init", [True, False])
@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_gru_linear_before_reset(linear_before_reset: int, init: bool) -> None:
    arrays = _arrays("GRU", "bidirectional", 7, 3, lens=[5, 7, 2], init=init, bias=init)
    _check("GRU", arrays, direction="bidirectional", linear_before_reset=linear_before_reset)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_clip(kind: str) -> None:
    arrays = _arrays(kind, "bidirectional", 7, 3, lens=[2, 7, 5], peep=True, scale=2.0)
    _check(kind, arrays, direction="bidirectional", clip=0.5)


def test_lstm_input_forget() -> None:
    arrays = _arrays("LSTM", "bidirectional", 7, 3, lens=[7, 4, 6], peep=True)
    _check("LSTM", arrays, direction="bidirectional", input_forget=1)


@pytest.mark.parametrize("outputs", [("Y",), ("Y_h",), ("Y_c",), ("Y_h", "Y_c")])
def test_optional_outputs(outputs) -> None:
    arrays = _arrays("LSTM", "reverse", 7, 3, lens=[7, 4, 6])
    _check("LSTM", arrays, outputs=outputs, direction="reverse")


# (name, alpha values, beta values): explicit values, since onnxruntime's defaults for
# ThresholdedRelu, Affine and ScaledTanh differ from the ONNX ops' own defaults used here.
ACTIVATIONS = [("Relu", [], []), ("Tanh", [], []), ("Sigmoid", [], []), ("LeakyRelu", [0.1], []),
               ("ThresholdedRelu", [0.3], []), ("HardSigmoid", [0.3], [0.4]),
               ("Affine", [0.7], [0.2]), ("ScaledTanh", [1.5], [0.8]), ("Elu", [0.9], []),
               ("Softsign", [], []), ("Softplus", [], [])]


@pytest.mark.parametrize("name,alpha,beta", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_activations(kind: str, name: str, alpha, beta) -> None:
    """The activation goes in the first slot forward and the last slot in reverse. Small
    weights keep unbounded ones (Softplus) from overflowing onnxruntime's float32."""
    slots = SLOTS[kind]
    names = [name] + ["Tanh"] * (slots - 1) + ["Tanh"] * (slots - 1) + [name]
    attrs = {"activations": names}
    if alpha:
        attrs["activation_alpha"] = alpha * 2
    if beta:
        attrs["activation_beta"] = beta * 2
    arrays = _arrays(kind, "bidirectional", 7, 3, lens=[2, 7, 5], scale=0.5)
    _check(kind, arrays, direction="bidirectional", **attrs)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_default_activation_parameters(kind: str) -> None:
    """LeakyRelu, HardSigmoid and Elu without alpha/beta take the ONNX ops' defaults."""
    names = ["LeakyRelu", "HardSigmoid", "Elu"][:SLOTS[kind]]
    _check(kind, _arrays(kind, "forward", 7, 3, scale=0.5), activations=names)


def test_symbolic_sequence_length_compiles_per_shape() -> None:
    """A model with a symbolic sequence dim is unrolled once per input shape, on first use."""
    arrays = _arrays("GRU", "forward", 7, 2)
    model, feeds, _ = _model("GRU", arrays, 0)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "T"
    session = onnxc.compile(model)
    for seq in (3, 6):
        sub = dict(arrays, X=arrays["X"][:seq])
        got = session.run(None, {"X": sub["X"]})
        for a, b in zip(got, _reference("GRU", sub, 0, ("X",), None)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_unknown_activation_is_reported() -> None:
    arrays = _arrays("RNN", "forward", 2, 1)
    model, _, _ = _model("RNN", arrays, 0, activations=["Gelu"])
    with pytest.raises(UnsupportedOpError, match="Gelu"):
        onnxc.compile(model)



@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_float64_matches_onnx_reference(kind: str) -> None:
    """onnxruntime has no float64 RNN kernels: check against onnx's reference evaluator.
    hidden_size is left out, so it comes from R's shape."""
    from onnx.reference import ReferenceEvaluator

    arrays = {k: None if v is None or v.dtype != np.float32 else v.astype(np.float64)
              for k, v in _arrays(kind, "bidirectional", 5, 2).items()}
    model, feeds, _ = _model(kind, arrays, 0, direction="bidirectional")
    node = model.graph.node[0]
    node.attribute.remove(next(a for a in node.attribute if a.name == "hidden_size"))
    for out in model.graph.output:
        out.type.tensor_type.elem_type = TensorProto.DOUBLE
    got = onnxc.compile(model).run(None, feeds)
    for a, b in zip(got, ReferenceEvaluator(model).run(None, feeds)):
        assert a.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_steps_share_kernels() -> None:
    """The unrolled steps compile to a few shared kernels (the step index is a constant
    buffer, not code), so compile time grows slowly with the sequence length."""
    arrays = _arrays("LSTM", "bidirectional", 24, 3, lens=[24, 2, 1], peep=True)
    session = onnxc.compile(_model("LSTM", arrays, 0, direction="bidirectional")[0])
    (exe,) = session.executables.values()
    distinct = len({k.symbol for k in exe.kernels})
    assert distinct <= 16 and len(exe.kernels) >= 4 * 24, (distinct, len(exe.kernels))
