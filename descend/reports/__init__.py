"""Plots: training curves, confusion matrices and image grids (PNG, via matplotlib's Agg)."""
