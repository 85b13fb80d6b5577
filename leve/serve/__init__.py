"""``leve serve``: a small browser app to try a checkpoint on your own photos.

Built on FastAPI + uvicorn (the optional ``app`` extra) with one plain HTML page; the model
is loaded once per process and every request reuses it. See :func:`leve.serve.app.create_app`.
"""
