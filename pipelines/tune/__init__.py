"""`attn tune`: the Optuna study, its trials, workers and the refit of the best. Imports everything
below it; nothing imports tune/.
"""
