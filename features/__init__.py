"""attn.features."""
