"""The web demo, by concern. Requests without gradio: ``service`` (previews, generation through
the engines' one interface, cancel flags, output folders), ``upload_tracking`` (uploads tracked
as they arrive), ``estimates`` (what a run will cost). The page: ``blocks`` (its layout, CSS
and JavaScript), ``wiring`` (every event connected), ``texts`` (its words). The handlers,
callable without a page: ``handlers`` (uploads, preview, examples, four modes), ``run_handlers``
(Generate, its run and Cancel), ``controls`` (the settings as a request; mode, engine,
estimate), ``editor`` (the camera-path editor's table and handlers), ``sessions`` (what each
browser session remembers), ``uploads`` (the upload limits), ``camera_view`` (the 3D view).
app.py only builds and launches them."""
