"""Dataset adapters: each turns one dataset's raw sources into a store (``leve prepare <name>``)."""
