"""Domain types, errors and the clock. Imports nothing internal."""
