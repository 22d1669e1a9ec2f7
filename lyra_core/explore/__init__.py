"""`lyra explore`: the logic (`explorer`, without Gradio) and the page (`page`, Gradio)."""
