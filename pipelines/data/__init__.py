"""Data: sources and folder scans, decoded-audio and encoder caches, tokenizers' text encoding, the
prepared splits, window batching and the `auto` values resolved from the training data.
Imports recipe/.
"""
