"""Run services: what every application shares about a run and its files.

`rundir` (a run's folder), `checkpoint` (safe save and load), `atomic` (crash-safe writes),
`audio` (reading and writing audio files), `device` (choosing the device), `model` (a trained
model loaded from a run), `chunking` (encoding and decoding any length), `metrics` (the distances
runs report) and `tracking` (metrics to MLflow or elsewhere). They use the kernel only.
"""
