"""Evaluation of a checkpoint on a dataset, and prediction on images."""
