"""Live systems: capture page_owner from debugfs, watch it over time, rank growing stacks.

`capture` reads the debugfs files byte for byte, `watch` stores snapshots in an SQLite
store, `trend` ranks the stacks of a store by growth. Every path to debugfs, /proc and
/boot goes through `host.HostPaths`, so tests and the simulator point them at a fake tree.
"""
