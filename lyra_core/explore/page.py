"""The `lyra explore` page (Gradio): widgets wired to a `lyra_core.explore.explorer.Explorer`.

Imported only by the `explore` command, so `import lyra_core` never imports Gradio. A user's
mistake (a bad upload, a bad preset name) is shown on the page (a warning toast and the message
box); the server keeps running.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls from a local tool

import gradio as gr
import torch

from lyra_core.errors import LyraError
from lyra_core.explore.explorer import (
    SLIDER_RANGE,
    Explorer,
    Sound,
    list_presets,
    load_preset,
    save_preset,
)

RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000, 96000)
CSS = "#lyra-message textarea {color: #b91c1c; font-weight: 600}"


def _message(exc: Exception) -> str:
    return str(exc) if isinstance(exc, LyraError) else f"{type(exc).__name__}: {exc}"


def guarded(outputs: int) -> Callable[[Callable[..., tuple]], Callable[..., tuple]]:
    """Turn an exception in a handler into a warning and the message box; other outputs stay."""

    def wrap(fn: Callable[..., tuple]) -> Callable[..., tuple]:
        @functools.wraps(fn)
        def run(*args: Any) -> tuple:
            try:
                return (*fn(*args), "")
            except Exception as exc:
                text = _message(exc)
                gr.Warning(text)
                return (*(gr.skip() for _ in range(outputs)), text)

        return run

    return wrap


def _metrics_table(values: dict[str, float]) -> str:
    if not values:
        return "*(no input to compare with: a sample or an interpolation)*"
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in values.items())
    return "| distance to the input | value |\n|---|---|\n" + rows


def build_app(explorer: Explorer) -> gr.Blocks:
    """The page for one explorer."""
    ex, pca = explorer, explorer.pca
    examples = {p.name if p.parent.name.startswith("step-") else str(p): p for p in ex.examples}

    def show(sound: Sound, values: list[float], new: bool = True) -> tuple:
        """Outputs for a rendered sound; `new` also replaces the input's player."""
        audio = ex.render(sound, values)
        state = {"sound": sound, "audio": audio}
        source: Any = gr.skip()
        if new:
            source = str(ex.preview(sound.source[0])) if sound.source is not None else None
        return state, source, str(ex.preview(audio)), _metrics_table(ex.metrics(sound, audio))

    with gr.Blocks(title=f"Lyra explore: {ex.loaded.name}") as app:
        state = gr.State(None)
        gr.Markdown(f"## Lyra explore: {ex.loaded.name}\n{ex.describe()}")
        message = gr.Textbox(label="Message", interactive=False, elem_id="lyra-message", lines=1)
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tab("File"):
                    upload = gr.File(label="Upload an audio file", elem_id="upload")
                    pick = gr.Dropdown(
                        choices=list(examples),
                        value=None,
                        label="…or pick a validation example",
                        elem_id="pick",
                    )
                with gr.Tab("Sample the prior"):
                    seed = gr.Number(0, label="Seed", precision=0)
                    temperature = gr.Slider(0.0, 2.0, 1.0, step=0.05, label="Temperature")
                    seconds = gr.Number(2.0, label="Seconds", minimum=0.01)
                    sample = gr.Button("Sample", elem_id="sample")
                with gr.Tab("Interpolate"):
                    file_a = gr.File(label="A")
                    file_b = gr.File(label="B")
                    mix = gr.Slider(0.0, 1.0, 0.5, step=0.05, label="A → B")
                    blend = gr.Button("Interpolate")
                source_audio = gr.Audio(
                    label="Input", type="filepath", interactive=False, elem_id="input"
                )
                current_audio = gr.Audio(
                    label="Current sound", type="filepath", interactive=False, elem_id="current"
                )
                metrics = gr.Markdown(elem_id="metrics")
            with gr.Column(scale=1):
                gr.Markdown("### Principal directions (standard deviations; decoded on release)")
                sliders = [
                    gr.Slider(
                        -SLIDER_RANGE,
                        SLIDER_RANGE,
                        0.0,
                        step=0.05,
                        label=f"PC{k + 1} ({float(pca.explained[k]):.0%} of the variance)",
                        elem_id=f"pc{k + 1}",
                    )
                    for k in range(pca.count)
                ]
                reset = gr.Button("Reset sliders")
                with gr.Accordion("Presets", open=True):
                    with gr.Row():
                        preset_name = gr.Textbox(label="Name", elem_id="preset-name", scale=2)
                        save = gr.Button("Save preset", elem_id="save-preset", scale=1)
                    with gr.Row():
                        presets = gr.Dropdown(
                            choices=explorer_presets(ex), label="Saved presets", scale=2
                        )
                        load = gr.Button("Load preset", scale=1)
                with gr.Accordion("Export", open=True):
                    with gr.Row():
                        fmt = gr.Radio(["wav", "flac"], value="wav", label="Format", elem_id="fmt")
                        bits = gr.Radio(
                            ["16", "24", "float"], value="16", label="Bits", elem_id="bits"
                        )
                    rate = gr.Dropdown(
                        choices=[str(r) for r in sorted({*RATES, ex.loaded.sample_rate})],
                        value=str(ex.loaded.sample_rate),
                        label="Sample rate (Hz)",
                        elem_id="rate",
                        allow_custom_value=True,
                    )
                    export = gr.Button("Export", elem_id="export")
                    exported = gr.File(label="Exported file", elem_id="exported", height=100)

        shown = [state, source_audio, current_audio, metrics]

        @guarded(len(shown))
        def on_file(path: str | None, *values: float) -> tuple:
            return show(ex.from_file(path), list(values))

        @guarded(len(shown))
        def on_pick(label: str | None, *values: float) -> tuple:
            if not label:
                return (gr.skip(),) * len(shown)
            return show(ex.from_file(examples[label]), list(values))

        @guarded(len(shown))
        def on_sample(s: float, temp: float, secs: float, *values: float) -> tuple:
            return show(ex.from_prior(int(s or 0), float(temp), float(secs or 0)), list(values))

        @guarded(len(shown))
        def on_blend(a: str | None, b: str | None, t: float, *values: float) -> tuple:
            return show(ex.between(ex.from_file(a), ex.from_file(b), float(t)), list(values))

        @guarded(len(shown))
        def on_slider(current: dict | None, *values: float) -> tuple:
            if current is None:
                raise LyraError("no sound yet: upload or pick a file, or sample the prior")
            return show(current["sound"], list(values), new=False)

        @guarded(len(sliders) + len(shown))
        def on_reset(current: dict | None) -> tuple:
            zeros = [0.0] * len(sliders)
            rest = (
                show(current["sound"], zeros, new=False) if current else (gr.skip(),) * len(shown)
            )
            return (*zeros, *rest)

        @guarded(1)
        def on_save(name: str, *values: float) -> tuple:
            save_preset(ex.presets_dir, name or "", list(values), ex.loaded.spec_hash)
            gr.Info(f"saved preset {name.strip()!r}")
            return (gr.update(choices=explorer_presets(ex), value=name.strip()),)

        @guarded(len(sliders) + len(shown))
        def on_load(name: str | None, current: dict | None) -> tuple:
            if not name:
                raise LyraError("pick a preset to load")
            values = load_preset(ex.presets_dir, name, len(sliders))
            rest = (
                show(current["sound"], values, new=False) if current else (gr.skip(),) * len(shown)
            )
            return (*values, *rest)

        @guarded(1)
        def on_export(current: dict | None, f: str, b: str, r: str | None) -> tuple:
            if current is None:
                raise LyraError("nothing to export yet: make a sound first")
            try:
                out_rate = int(float(r)) if r else None
            except ValueError as exc:
                raise LyraError(f"sample rate {r!r}: not a number") from exc
            audio: torch.Tensor = current["audio"]
            return (str(ex.export(current["sound"], audio, f, out_rate, b)),)

        upload.upload(on_file, [upload, *sliders], [*shown, message])
        pick.input(on_pick, [pick, *sliders], [*shown, message])
        sample.click(on_sample, [seed, temperature, seconds, *sliders], [*shown, message])
        blend.click(on_blend, [file_a, file_b, mix, *sliders], [*shown, message])
        for slider in sliders:
            slider.release(on_slider, [state, *sliders], [*shown, message])
        reset.click(on_reset, [state], [*sliders, *shown, message])
        save.click(on_save, [preset_name, *sliders], [presets, message])
        load.click(on_load, [presets, state], [*sliders, *shown, message])
        export.click(on_export, [state, fmt, bits, rate], [exported, message])
    return app


def explorer_presets(ex: Explorer) -> list[str]:
    return list_presets(ex.presets_dir)


def serve(explorer: Explorer, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Start the page's server; with `block`, serve until interrupted. Returns the app."""
    app = build_app(explorer)
    allowed = [str(explorer.run_dir / "explore"), str(explorer.preview_dir)]
    app.queue(default_concurrency_limit=1)
    try:
        app.launch(
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            prevent_thread_lock=True,
            allowed_paths=allowed,
            show_error=True,
            quiet=True,
            max_file_size="500mb",
            css=CSS,
        )
    except OSError as exc:  # the port is taken, the host is not this machine's
        raise LyraError(f"cannot serve on {host}:{port}: {exc}") from exc
    if block:
        print(f"serving on {app.local_url} (Ctrl-C stops)", flush=True)
        app.block_thread()
    return app
