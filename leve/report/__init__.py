"""Everything a person reads: Markdown/CSV tables, the combined metrics table, experiment tables, figures."""
