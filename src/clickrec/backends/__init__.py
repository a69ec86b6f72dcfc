"""Storage by role: one protocol per role (base.py), one module per backend, chosen by URL."""
