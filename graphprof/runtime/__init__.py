"""How graphprof runs: torch threads, the allocator setting, data-parallel workers."""
