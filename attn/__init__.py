"""attn: train and run audio and text classifiers."""
