"""Post-mortem page_owner: read what a crash dump (vmcore) held, through drgn."""
