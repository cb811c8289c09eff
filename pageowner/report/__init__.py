"""Renderers: everything that turns analysis results into text, tables, JSON or HTML.

Only modules in this package import rich, and only when they render to a terminal.
"""
