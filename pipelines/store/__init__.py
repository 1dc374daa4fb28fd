"""What lands on disk: the `.attn` container, the model artifact and its blend state, the resume
checkpoint and the run directory. Imports recipe/, data/ and infer/.
"""
