"""Synthetic data and contract suites the package ships for its own and users' tests."""
