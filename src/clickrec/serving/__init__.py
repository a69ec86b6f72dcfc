"""Serving: the live model, the online state, filters and hot swap."""
