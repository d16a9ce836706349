#!/usr/bin/env python3
"""Write the tiny ONNX files of the bad-input catalog (tests/c/test_catalog.c) to tests/data/.

- matmul.onnx: a valid model that is not a decoder, Y = MatMul(A, B).
- decoder-no-presents.onnx: a decoder's inputs (input_ids, attention_mask, one layer of past
  key/value) and logits, but no present.N.key/value outputs, so its cache cannot be carried.

Both load in ONNX Runtime; specdec must refuse them with SPECDEC_STATUS_UNSUPPORTED_LAYOUT.
They are committed (a few hundred bytes each); rerun this with the `onnx` package
(.venv-models, see scripts/requirements-models.txt) only to change them.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data")
os.makedirs(out, exist_ok=True)
opset = [helper.make_opsetid("", 17)]


def save(model, name):
    onnx.checker.check_model(model, full_check=True)
    path = os.path.join(out, name)
    onnx.save(model, path)
    print(f"{path}: {os.path.getsize(path)} bytes")


# Y[2, 2] = A[2, 3] x B[3, 2]
matmul = helper.make_graph(
    [helper.make_node("MatMul", ["A", "B"], ["Y"])],
    "matmul",
    [helper.make_tensor_value_info("A", TensorProto.FLOAT, [2, 3]), helper.make_tensor_value_info("B", TensorProto.FLOAT, [3, 2])],
    [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 2])],
)
save(helper.make_model(matmul, opset_imports=opset, ir_version=8, producer_name="specdec-tests"), "matmul.onnx")

# logits[b, s, 8] = Gather(embedding[8, 8], input_ids); the past inputs are declared but unused.
vocab, heads, dim = 8, 1, 4
embedding = numpy_helper.from_array(np.eye(vocab, dtype=np.float32), "embedding")
decoder = helper.make_graph(
    [helper.make_node("Gather", ["embedding", "input_ids"], ["logits"], axis=0)],
    "decoder_without_presents",
    [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
        helper.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT, ["batch", heads, "past", dim]),
        helper.make_tensor_value_info("past_key_values.0.value", TensorProto.FLOAT, ["batch", heads, "past", dim]),
    ],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", vocab])],
    initializer=[embedding],
)
save(helper.make_model(decoder, opset_imports=opset, ir_version=8, producer_name="specdec-tests"), "decoder-no-presents.onnx")
