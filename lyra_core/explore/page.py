"""The `lyra explore` page (Gradio): widgets wired to a `lyra_core.explore.explorer.Explorer`.

Imported only by the `explore` command, so `import lyra_core` never imports Gradio. A user's
mistake (a bad upload, a bad preset name) is shown on the page (a warning toast and the message
box); the server keeps running.
"""

from __future__ import annotations

import functools
import getpass
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls from a local tool
# Gradio keeps uploads in one folder under /tmp; another user's would refuse this user's files.
os.environ.setdefault(
    "GRADIO_TEMP_DIR", str(Path(tempfile.gettempdir()) / f"gradio-{getpass.getuser()}")
)

import gradio as gr
import torch

from lyra_core.errors import LyraError
from lyra_core.explore.explorer import (
    BITSTREAM,
    EXPORT_FORMATS,
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


@attrs.define
class Page:
    """The page's widgets (built inside a `gr.Blocks`), by what they do."""

    state: Any = None
    message: Any = None
    # sources of a sound
    upload: Any = None
    pick: Any = None
    seed: Any = None
    temperature: Any = None
    seconds: Any = None
    sample: Any = None
    file_a: Any = None
    file_b: Any = None
    mix: Any = None
    blend: Any = None
    # what is heard
    source_audio: Any = None
    current_audio: Any = None
    metrics: Any = None
    # steering, presets, export
    sliders: list[Any] = attrs.Factory(list)
    reset: Any = None
    preset_name: Any = None
    save: Any = None
    presets: Any = None
    load: Any = None
    fmt: Any = None
    bits: Any = None
    rate: Any = None
    export: Any = None
    exported: Any = None

    @property
    def shown(self) -> list[Any]:
        """The outputs of every handler that renders a sound."""
        return [self.state, self.source_audio, self.current_audio, self.metrics]


def _source_tabs(page: Page, examples: dict[str, Path]) -> None:
    with gr.Tab("File"):
        page.upload = gr.File(label="Upload an audio file", elem_id="upload")
        page.pick = gr.Dropdown(
            choices=list(examples),
            value=None,
            label="…or pick a validation example",
            elem_id="pick",
        )
    with gr.Tab("Sample the prior"):
        page.seed = gr.Number(0, label="Seed", precision=0)
        page.temperature = gr.Slider(0.0, 2.0, 1.0, step=0.05, label="Temperature")
        page.seconds = gr.Number(2.0, label="Seconds", minimum=0.01)
        page.sample = gr.Button("Sample", elem_id="sample")
    with gr.Tab("Interpolate"):
        page.file_a = gr.File(label="A")
        page.file_b = gr.File(label="B")
        page.mix = gr.Slider(0.0, 1.0, 0.5, step=0.05, label="A → B")
        page.blend = gr.Button("Interpolate")


def _players(page: Page) -> None:
    page.source_audio = gr.Audio(label="Input", type="filepath", interactive=False, elem_id="input")
    page.current_audio = gr.Audio(
        label="Current sound", type="filepath", interactive=False, elem_id="current"
    )
    page.metrics = gr.Markdown(elem_id="metrics")


def _slider(label: str, elem_id: str) -> Any:
    """A slider in standard deviations, at 0."""
    return gr.Slider(-SLIDER_RANGE, SLIDER_RANGE, 0.0, step=0.05, label=label, elem_id=elem_id)


def _pca_sliders(ex: Explorer) -> list[Any]:
    gr.Markdown("### Principal directions")
    return [
        _slider(f"PC{k + 1} ({float(ex.pca.explained[k]):.0%} of the variance)", f"pc{k + 1}")
        for k in range(ex.pca.count)
    ]


def _descriptor_sliders(ex: Explorer) -> list[Any]:
    gr.Markdown("### Descriptors")
    found = ex.descriptors
    if found is None or not found.count:
        gr.Markdown("*(none could be fitted on the validation audio)*")
        return []
    return [_slider(found.label(k), f"descriptor-{found.names[k]}") for k in range(found.count)]


def _sliders(page: Page, ex: Explorer) -> None:
    gr.Markdown("Sliders in standard deviations of the validation latents; decoded on release.")
    with gr.Row():
        with gr.Column(min_width=200):
            pca = _pca_sliders(ex)
        with gr.Column(min_width=200):
            described = _descriptor_sliders(ex)
    page.sliders = [*pca, *described]  # the order of `Explorer.render`'s values
    page.reset = gr.Button("Reset sliders")


def _presets(page: Page, ex: Explorer) -> None:
    with gr.Accordion("Presets", open=True):
        with gr.Row():
            page.preset_name = gr.Textbox(label="Name", elem_id="preset-name", scale=2)
            page.save = gr.Button("Save preset", elem_id="save-preset", scale=1)
        with gr.Row():
            page.presets = gr.Dropdown(choices=explorer_presets(ex), label="Saved presets", scale=2)
            page.load = gr.Button("Load preset", scale=1)


def _export(page: Page, ex: Explorer) -> None:
    with gr.Accordion("Export", open=True):
        with gr.Row():
            formats = [*EXPORT_FORMATS, BITSTREAM]
            page.fmt = gr.Radio(formats, value="wav", label="Format", elem_id="fmt")
            page.bits = gr.Radio(["16", "24", "float"], value="16", label="Bits", elem_id="bits")
        page.rate = gr.Dropdown(
            choices=[str(r) for r in sorted({*RATES, ex.loaded.sample_rate})],
            value=str(ex.loaded.sample_rate),
            label="Sample rate (Hz)",
            elem_id="rate",
            allow_custom_value=True,
        )
        page.export = gr.Button("Export", elem_id="export")
        page.exported = gr.File(label="Exported file", elem_id="exported", height=100)


def _layout(ex: Explorer, examples: dict[str, Path]) -> Page:
    """Every widget, in the page's two columns (call inside `gr.Blocks`)."""
    page = Page(state=gr.State(None))
    gr.Markdown(f"## Lyra explore: {ex.loaded.name}\n{ex.describe()}")
    page.message = gr.Textbox(label="Message", interactive=False, elem_id="lyra-message", lines=1)
    with gr.Row():
        with gr.Column(scale=1):
            _source_tabs(page, examples)
            _players(page)
        with gr.Column(scale=1):
            _sliders(page, ex)
            _presets(page, ex)
            _export(page, ex)
    return page


class Handlers:
    """What each widget does: the explorer's methods, their outputs shaped for the page."""

    def __init__(self, ex: Explorer, examples: dict[str, Path], sliders: int):
        self.ex, self.examples, self.sliders = ex, examples, sliders

    def show(self, sound: Sound, values: Sequence[float], new: bool = True) -> tuple:
        """Outputs for a rendered sound; `new` also replaces the input's player."""
        ex = self.ex
        audio = ex.render(sound, list(values))
        state = {"sound": sound, "audio": audio}
        source: Any = gr.skip()
        if new:
            source = str(ex.preview(sound.source[0])) if sound.source is not None else None
        return state, source, str(ex.preview(audio)), _metrics_table(ex.metrics(sound, audio))

    def keep(self, current: dict | None, values: Sequence[float]) -> tuple:
        """The current sound with new slider values (nothing without a sound)."""
        if current is None:
            return (gr.skip(),) * SHOWN
        return self.show(current["sound"], values, new=False)

    def on_file(self, path: str | None, *values: float) -> tuple:
        return self.show(self.ex.from_file(path), values)

    def on_pick(self, label: str | None, *values: float) -> tuple:
        if not label:
            return (gr.skip(),) * SHOWN
        return self.show(self.ex.from_file(self.examples[label]), values)

    def on_sample(self, s: float, temp: float, secs: float, *values: float) -> tuple:
        return self.show(self.ex.from_prior(int(s or 0), float(temp), float(secs or 0)), values)

    def on_blend(self, a: str | None, b: str | None, t: float, *values: float) -> tuple:
        ex = self.ex
        return self.show(ex.between(ex.from_file(a), ex.from_file(b), float(t)), values)

    def on_slider(self, current: dict | None, *values: float) -> tuple:
        if current is None:
            raise LyraError("no sound yet: upload or pick a file, or sample the prior")
        return self.show(current["sound"], values, new=False)

    def on_reset(self, current: dict | None) -> tuple:
        zeros = [0.0] * self.sliders
        return (*zeros, *self.keep(current, zeros))

    def on_save(self, name: str, *values: float) -> tuple:
        ex = self.ex
        save_preset(ex.presets_dir, name or "", list(values), ex.loaded.spec_hash)
        gr.Info(f"saved preset {name.strip()!r}")
        return (gr.update(choices=explorer_presets(ex), value=name.strip()),)

    def on_load(self, name: str | None, current: dict | None) -> tuple:
        if not name:
            raise LyraError("pick a preset to load")
        values = load_preset(self.ex.presets_dir, name, self.sliders)
        return (*values, *self.keep(current, values))

    def on_export(self, current: dict | None, f: str, b: str, r: str | None) -> tuple:
        if current is None:
            raise LyraError("nothing to export yet: make a sound first")
        try:
            out_rate = int(float(r)) if r else None
        except ValueError as exc:
            raise LyraError(f"sample rate {r!r}: not a number") from exc
        audio: torch.Tensor = current["audio"]
        return (str(self.ex.export(current["sound"], audio, f, out_rate, b)),)


SHOWN = 4  # state, input player, current player, metrics: what `Handlers.show` returns


def _wire(page: Page, h: Handlers) -> None:
    """Connect each widget's event to its handler, errors going to the message box."""
    sliders, shown, n = page.sliders, page.shown, len(page.sliders)
    out = [*shown, page.message]
    page.upload.upload(guarded(SHOWN)(h.on_file), [page.upload, *sliders], out)
    page.pick.input(guarded(SHOWN)(h.on_pick), [page.pick, *sliders], out)
    inputs = [page.seed, page.temperature, page.seconds, *sliders]
    page.sample.click(guarded(SHOWN)(h.on_sample), inputs, out)
    inputs = [page.file_a, page.file_b, page.mix, *sliders]
    page.blend.click(guarded(SHOWN)(h.on_blend), inputs, out)
    for slider in sliders:
        slider.release(guarded(SHOWN)(h.on_slider), [page.state, *sliders], out)
    page.reset.click(guarded(n + SHOWN)(h.on_reset), [page.state], [*sliders, *out])
    on_save = guarded(1)(h.on_save)
    page.save.click(on_save, [page.preset_name, *sliders], [page.presets, page.message])
    on_load = guarded(n + SHOWN)(h.on_load)
    page.load.click(on_load, [page.presets, page.state], [*sliders, *out])
    inputs = [page.state, page.fmt, page.bits, page.rate]
    page.export.click(guarded(1)(h.on_export), inputs, [page.exported, page.message])


def build_app(explorer: Explorer) -> gr.Blocks:
    """The page for one explorer."""
    ex = explorer
    examples = {p.name if p.parent.name.startswith("step-") else str(p): p for p in ex.examples}
    with gr.Blocks(title=f"Lyra explore: {ex.loaded.name}") as app:
        page = _layout(ex, examples)
        _wire(page, Handlers(ex, examples, len(page.sliders)))
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
