"""Size limits shared by every reader of pictures: images, depth arrays, video frames, checkpoints' resolutions.

A file states its size in its header (an image's, an ``.npy``'s, a video stream's, a checkpoint's
``resolution``); leve reads that size first and refuses one over the cap before anything is decoded,
decompressed or allocated. Kept free of imports so that any module can use it.
"""

MAX_PIXELS = 64_000_000  # width x height of one picture (Pillow's decompression-bomb limit is set to it)
