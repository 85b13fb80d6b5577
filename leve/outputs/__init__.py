"""Outputs people use beyond the per-image maps of ``leve predict``: a colour-mapped depth
video with a temporal-stability figure (:mod:`leve.outputs.video`) and coloured point clouds
(:mod:`leve.outputs.pointcloud`) from metric depth and the camera's intrinsics
(:mod:`leve.outputs.intrinsics`). ``leve predict`` and ``leve serve`` call them."""
