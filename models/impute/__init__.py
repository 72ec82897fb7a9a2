"""Imputation estimators."""

from models.impute.knn import DonorKNNImputer, FastKNNImputer

__all__ = ["DonorKNNImputer", "FastKNNImputer"]
