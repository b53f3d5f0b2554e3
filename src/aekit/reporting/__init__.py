"""Figures (matplotlib) and the HTML report of a fitted model."""
