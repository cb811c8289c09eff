"""The page_owner_sort engine: options and keys, scanning and grouping, ordering, rendering."""
