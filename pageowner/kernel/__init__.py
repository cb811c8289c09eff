"""What the kernel prints, as data: versions, flag and name tables, allocator frames."""
