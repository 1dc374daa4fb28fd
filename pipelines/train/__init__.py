"""Training: the Trainer loop, one model, ensembles, folds, the baseline, pretraining, optimiser,
distributed set-up and TensorBoard. Imports ship/ (a run ends with its report) and below.
"""
