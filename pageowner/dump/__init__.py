"""The text of the debugfs files: reading, writing, era detection and safe file handling."""
