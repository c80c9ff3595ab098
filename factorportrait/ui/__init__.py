"""The web demo: request handling (service.py, no gradio), the event handlers (handlers.py,
callable without a page), the words it shows (texts.py), the trajectory editor's table model
(editor.py) and the Gradio Blocks layout and wiring (blocks.py). app.py only wires them."""
