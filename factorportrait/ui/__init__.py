"""The web demo: request handling (service.py, no gradio), the trajectory editor's table model
(editor.py) and the Gradio Blocks layout (blocks.py). app.py only wires them."""
