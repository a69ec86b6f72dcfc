"""Recipes: pure algorithms (no I/O) that fit on interactions and score for a reader."""
