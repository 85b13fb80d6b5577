"""The templates of the Python files in a Hugging Face export (``leve export --format hf``), loaded by
transformers' remote code (``trust_remote_code=True``): :mod:`leve.models.hf_code` writes each with
leve's imports replaced by their source, so that the files run where only torch and transformers are
installed. Here, inside leve, they import leve as any module does (the tests load them so)."""
