"""The recipe: its typed schema (config), loading and `--set` overrides (load), the tuning search
space (space) and the model a recipe builds (build). Imports only fsutil/device from pipelines.
"""
