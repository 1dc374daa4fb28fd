"""Scoring: a model over windows (inference), metrics, evaluation, `attn predict`/`attn embed`,
the ONNX runner (exported) and the figures (plots). Imports recipe/ and data/.
"""
