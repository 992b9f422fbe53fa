"""ONNX element types and tensors <-> IR types and numpy arrays."""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

from onnxc.ir.dtypes import DType
from onnxc.ir.errors import ModelError
from onnxc.ir.limits import check_shape
from onnxc.ir.types import Dim, TensorType

_FROM_ONNX = {
    onnx.TensorProto.FLOAT: DType.float32, onnx.TensorProto.DOUBLE: DType.float64,
    onnx.TensorProto.FLOAT16: DType.float16, onnx.TensorProto.INT8: DType.int8,
    onnx.TensorProto.INT16: DType.int16, onnx.TensorProto.INT32: DType.int32,
    onnx.TensorProto.INT64: DType.int64, onnx.TensorProto.UINT8: DType.uint8,
    onnx.TensorProto.UINT16: DType.uint16, onnx.TensorProto.UINT32: DType.uint32,
    onnx.TensorProto.UINT64: DType.uint64, onnx.TensorProto.BOOL: DType.bool,
    onnx.TensorProto.BFLOAT16: DType.bfloat16,
    onnx.TensorProto.FLOAT8E4M3FN: DType.float8e4m3fn,
    onnx.TensorProto.FLOAT8E4M3FNUZ: DType.float8e4m3fnuz,
    onnx.TensorProto.FLOAT8E5M2: DType.float8e5m2,
    onnx.TensorProto.FLOAT8E5M2FNUZ: DType.float8e5m2fnuz,
    onnx.TensorProto.FLOAT8E8M0: DType.float8e8m0,
    onnx.TensorProto.FLOAT4E2M1: DType.float4e2m1,
    onnx.TensorProto.INT4: DType.int4, onnx.TensorProto.UINT4: DType.uint4,
    onnx.TensorProto.INT2: DType.int2, onnx.TensorProto.UINT2: DType.uint2,
}
_TO_ONNX = {v: k for k, v in _FROM_ONNX.items()}
_PACKED_BITS = {DType.int4: 4, DType.uint4: 4, DType.float4e2m1: 4, DType.int2: 2,
                DType.uint2: 2}


def dtype_from_onnx(elem_type: int, where: str = "") -> DType:
    try:
        return _FROM_ONNX[elem_type]
    except KeyError:
        name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in \
            onnx.TensorProto.DataType.values() else str(elem_type)
        raise ModelError(f"{where}element type {name} is not supported yet") from None


def dtype_to_onnx(dtype: DType) -> int:
    return _TO_ONNX[dtype]


def ort_type_string(dtype: DType) -> str:
    """onnxruntime's spelling of a tensor type, e.g. ``tensor(float)``."""
    name = onnx.helper.tensor_dtype_to_string(_TO_ONNX[dtype]).replace("TensorProto.", "").lower()
    return f"tensor({name})"


def value_info_type(vi: onnx.ValueInfoProto) -> TensorType:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise ModelError(f"graph input/output {vi.name!r} is not a tensor; only tensors are "
                         f"supported yet")
    dtype = dtype_from_onnx(tt.elem_type, f"input {vi.name!r}: ")
    if not tt.HasField("shape"):
        raise ModelError(f"input {vi.name!r} has no shape; give one with input_shapes=")
    dims: list[Dim] = []
    for k, d in enumerate(tt.shape.dim):
        if d.HasField("dim_value"):
            if d.dim_value < 0:
                raise ModelError(f"input {vi.name!r} has negative dimension {d.dim_value}")
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or f"{vi.name}_dim{k}")
    check_shape(dims, dtype.itemsize, f"input {vi.name!r}")
    return TensorType(dtype, tuple(dims))


def tensor_to_array(t: onnx.TensorProto) -> np.ndarray:
    """A TensorProto's data, checked against its declared shape before anything is allocated."""
    dtype = dtype_from_onnx(t.data_type, f"tensor {t.name!r}: ")
    check_shape(list(t.dims), dtype.itemsize, f"tensor {t.name!r}")
    count = math.prod(t.dims)
    # 4- and 2-bit types are packed two or four to a byte in the file (numpy_helper unpacks).
    per_byte = 8 // _PACKED_BITS.get(dtype, 8)
    need = -(-count // per_byte) if per_byte > 1 else count * dtype.itemsize
    if t.HasField("raw_data") and len(t.raw_data) != need:
        raise ModelError(f"tensor {t.name!r} holds {len(t.raw_data)} bytes of data, but its "
                         f"shape {list(t.dims)} of {dtype.value} needs {need}")
    try:
        arr = numpy_helper.to_array(t)
    except Exception as exc:
        raise ModelError(f"tensor {t.name!r} cannot be read (shape {list(t.dims)}, "
                         f"{dtype.value}): {exc}") from exc
    if arr.size != count:
        raise ModelError(f"tensor {t.name!r} holds {arr.size} elements but its shape "
                         f"{list(t.dims)} needs {count}")
    return _contiguous(arr)


def _contiguous(array):
    """C-contiguous without numpy's ascontiguousarray turning 0-d arrays into 1-d ones."""
    import numpy

    array = numpy.asarray(array)
    return array if array.flags.c_contiguous else numpy.array(array, order="C")
