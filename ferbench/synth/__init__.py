"""Replica generation: real faces animated with FACS Action Units (see `faces.py`)."""
