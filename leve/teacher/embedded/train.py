"""Deprecated: ``python -m leve.pipeline.embedded_teacher`` trains the embedded teacher (it moved to the top
layer: it scores with leve.evaluation, a layer above the teacher's)."""

if __name__ == "__main__":
    import runpy
    import sys

    print("python -m leve.teacher.embedded.train is deprecated: run python -m leve.pipeline.embedded_teacher",
          file=sys.stderr)
    runpy.run_module("leve.pipeline.embedded_teacher", run_name="__main__", alter_sys=True)
