"""attn.pipelines: one sub-package per job, in the layer order tests/test_layering.py states
(recipe < data < infer < store < ship, serve < train < tune); fsutil and device, the two
modules at this level, sit under all of them."""
