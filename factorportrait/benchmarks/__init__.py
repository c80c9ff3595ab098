"""The benchmark room: every timing the project takes of itself, printed, never asserted.

- ``cpu``: the CPU stages (``python -m factorportrait bench``): cameras and rays, tracking, the
  preview through the API and the web service, the rasterisers, the tiny pipeline and, with
  ``--model``, a transformer step against plain Wan; ``cpu_summary`` prints them and writes the
  JSON and markdown.
- ``gpu``: the real-size GPU benchmark with random weights (``bench-gpu``): ``gpu_sections``
  measures, ``gpu_report`` prints; ``sizes`` is what it builds at which size.
- ``models`` and ``timing``, shared by both: how a model, its step's inputs and a pipeline are
  built at a named size, and how a call is timed (synchronised on a GPU) and its memory read.

Importing this package imports none of its parts: ``gpu`` must load on a machine with only
torch, transformers and diffusers, and ``cpu`` needs the whole app.
"""
