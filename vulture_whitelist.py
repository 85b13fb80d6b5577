"""Names vulture cannot see used (``make test`` runs ``vulture leve vulture_whitelist.py --min-confidence 60``).

Vulture matches by name: each line below marks every definition of that name in ``leve`` as used, so
a name is listed only when all its definitions are used from outside leve's own code. Functions
registered by decorators (typer commands, FastAPI routes and exception handlers) are left out by
``ignore_decorators`` in pyproject.toml's ``[tool.vulture]`` instead. Add a name here only with the
reason it is used; remove what is really unused.
"""
# ruff: noqa: B018  (each line is a bare attribute access: vulture reads the names, nothing runs them)


class _Names:
    def __getattr__(self, name: str) -> str:
        return name


_ = _Names()

# Called by the libraries that own the protocol, never by name in leve.
_.forward  # torch.nn.Module.forward: called by Module.__call__ (every model and block in leve.models)
_.get_next  # onnxruntime.quantization.CalibrationDataReader.get_next: called by quantize_static (leve.models.runtime)
_.readable  # io.RawIOBase protocol of leve.sources.remote_zip.HttpRangeFile: called by io.BufferedReader and zipfile
_.seekable  # io.RawIOBase protocol (zipfile seeks the remote file)
_.tell  # io.RawIOBase protocol (zipfile reads the position)
_.readinto  # io.RawIOBase protocol: io.BufferedReader reads through it
_.send_400_response  # leve.serve.server: overrides uvicorn's H11Protocol.send_400_response (answer to an unparsable request)
_.signum  # the signal number argument of signal handlers (leve.bench.gpu, leve.train.loop): signal.signal's call signature

# Attributes set on other libraries' objects, read by those libraries.
_.maxlevel  # reprlib.Repr limits (leve.errors.shown): read by Repr.repr
_.maxstring  # reprlib.Repr limit
_.maxother  # reprlib.Repr limit
_.maxlist  # reprlib.Repr limit
_.maxtuple  # reprlib.Repr limit
_.maxdict  # reprlib.Repr limit
_.maxset  # reprlib.Repr limit
_.intra_op_num_threads  # onnxruntime.SessionOptions (leve.models.runtime): read by InferenceSession
_.inter_op_num_threads  # onnxruntime.SessionOptions
_.graph_optimization_level  # onnxruntime.SessionOptions
_.enable_profiling  # onnxruntime.SessionOptions (leve.models.runtime.profile_operators)
_.profile_file_prefix  # onnxruntime.SessionOptions
_.short_description  # coremltools MLModel (leve.export_mobile): saved into the .mlpackage description
_.license  # coremltools MLModel (leve.export_mobile): saved into the .mlpackage metadata
_.pix_fmt  # PyAV video stream's pixel format (leve.outputs.video): read by the encoder
_.preserve_quotes  # ruamel.yaml round-trip setting (leve.pipeline.profiles, leve.pipeline.stages): read by its dumper
_.MAX_IMAGE_PIXELS  # PIL.Image's decompression-bomb cap (leve.store.images): read by Image.open
_.activation2  # the DPT head's final activation module (leve.pipeline.embedded_teacher): called by the head's forward

# transformers' remote code of a Hugging Face export (leve.models.hf_remote): named in its auto_map, read by transformers.
_.LeveForDepthEstimation  # AutoModelForDepthEstimation / AutoModel (auto_map), leve.models.hf.MODEL_CLASS
_.LeveImageProcessor  # AutoImageProcessor (preprocessor_config.json's auto_map)
_.model_type  # PretrainedConfig.model_type: matched against config.json
_.config_class  # PreTrainedModel.config_class: the configuration from_pretrained reads
_.base_model_prefix  # PreTrainedModel.base_model_prefix: leve's weight names are loaded under it
_.main_input_name  # PreTrainedModel.main_input_name: pixel_values
_.model_input_names  # BaseImageProcessor.model_input_names
_._init_weights  # PreTrainedModel._init_weights: called by from_pretrained for what model.safetensors lacks
_.post_process_depth_estimation  # called by transformers' depth-estimation pipeline

# Dataclass fields written out by dataclasses.asdict (JSON reports), never read by attribute.
_.output_range  # leve.export.Check and leve.models.runtime.Check: recorded in the export and bench runtimes JSON

# Public API used by the tests (each checks a result against an independent computation).
_.align_lstsq_disparity  # leve.evaluation.align: tests/evaluation/test_alignment_order.py
_.align_depth  # leve.evaluation.align: tests/evaluation/test_protocols.py
_.pool_pixel_sums  # leve.metrics: tests/evaluation/test_metrics.py, named by aggregate()'s error message
_.temporal_stability  # leve.outputs.video: the stability figure of a whole sequence, tests/outputs/test_video.py
_.LCB_LABELS  # leve.report.experiments: row labels of the lcb group, tests/report/test_experiments.py
_.close_all  # leve.sources.archive: closes the process's cached zips, tests/datasets and tests/evaluation
_.iter_chunks  # leve.store.reader.SplitReader: blockwise reading named in open_split's doc, tests/datasets/test_synthetic.py
_.list_teachers  # leve.teacher.registry: every registered teacher, tests/sources/test_weights.py
_.__getattr__  # PEP 562 module __getattr__ of the package __init__ files: the deprecated package-level names
