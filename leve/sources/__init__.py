"""Getting raw files: checked, resumable downloads, archives read in place, HTTP range reads, weights."""
