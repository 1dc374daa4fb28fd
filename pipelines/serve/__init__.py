"""`attn serve`: one loaded model behind HTTP. Imports infer/ and below; never ship/ or train/."""
