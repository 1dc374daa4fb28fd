"""attn.pipelines."""
