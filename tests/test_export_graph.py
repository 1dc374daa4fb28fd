"""What goes into an exported graph beyond the model's own layers: ONNX stand-ins for ops it lacks,
and a file free of leftovers onnxruntime would warn about."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("n", [0, 1, 2, 3, 8, 9, 1000])
def test_the_baselines_exported_bigram_search_equals_searchsorted(n, monkeypatch):
    """The blended text baseline looks bigrams up with searchsorted, which ONNX lacks; the
    branchless binary search used while exporting finds the same indices."""
    import torch

    from attn.models.linear import sorted_index

    g = torch.Generator().manual_seed(n)
    keys = torch.unique(torch.randint(0, 5000, (n,), generator=g))
    query = torch.randint(-3, 5003, (3, 17), generator=g)
    query[0, : min(5, len(keys))] = keys[:5]  # exact hits too
    want = torch.searchsorted(keys, query)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert torch.equal(sorted_index(keys, query), want)


def test_constants_no_node_reads_are_left_out_of_the_file():
    """The exporter can leave an unused constant behind (an embedding's `num_embeddings_scalar` in
    text models); onnxruntime then warned, in colour, whenever anyone loaded the file."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from attn.pipelines.ship.export import _drop_unused_initializers

    const = [helper.make_tensor(n, TensorProto.FLOAT, [1], [1.0]) for n in ("used", "in_body", "unused")]
    body = helper.make_graph([helper.make_node("Add", ["x", "in_body"], ["y"])], "body", [], [])
    graph = helper.make_graph([helper.make_node("Add", ["x", "used"], ["z"]),
                               helper.make_node("If", ["c"], ["w"], then_branch=body, else_branch=body)],
                              "g", [], [], initializer=const)  # fmt: skip
    _drop_unused_initializers(graph)
    assert [t.name for t in graph.initializer] == ["used", "in_body"]
