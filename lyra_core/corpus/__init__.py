"""The real-audio corpus `lyra data corpus DIR` builds from Debian's packaged sound sources.

Sources (each one is a *source* for the split; see `sources.SOURCES`):

- music: phrases written here as MIDI (piano, strings, guitar, bass, drums, winds: scales,
  arpeggios, chords, grooves) rendered by `fluidsynth` with FluidR3_GM.sf2 (fluid-soundfont-gm)
  and by `timidity` with freepats, both sets of recorded instrument samples; recorded drum hits
  (hydrogen-data's GMRockKit), instrument samples and loops (lmms-common), game music
  (frozen-bubble-data);
- speech: recorded speech (alsa-utils, sound-theme-freedesktop) and `espeak-ng` speaking
  sentences written here in several languages and voices;
- sfx: recorded sound effects and environment sounds (sound-theme-freedesktop, minetest-data,
  frozen-bubble-data, lmms-common).

Every output is a WAV file in DIR/{train,validation,test}/. The split is by source file: every
source file (or generated phrase or utterance) goes to exactly one split, chosen by a shuffle
seeded with `--seed`. DIR/manifest.json and DIR/manifest.csv list every output file with its
source file, Debian package, package version, licence, domain, duration and split.

Modules: `debian` (packages, versions, licences), `items` (what a source lists), `midi` (phrases
written and rendered here), `speech` (espeak-ng sentences), `sources` (the sources), `trimming`,
`splits` (split and budget), `manifest`, `build` (`build_corpus`).
"""
