"""The pipeline as a whole: stage dependencies derived from imports, profiles, and the demo."""
