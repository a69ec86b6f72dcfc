"""Splits and ranking metrics shared by training and benchmarks."""
