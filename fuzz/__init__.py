"""Fuzzing the dump readers and the sort engine: targets, seeds, our mutator, the driver."""
