"""Synthetic data the package ships: for `clickrec demo`, the benchmarks and the tests."""
