"""Aggregation over records, and one module per analysis command."""
