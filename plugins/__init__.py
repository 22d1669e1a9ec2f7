"""Lyra's built-in plugins, one module per component family (installed as `lyra_plugins`).

Each module is an entry point in group `lyra` in Lyra's pyproject.toml and registers its
components in `lyra_register_components`, exactly as a third-party plugin does.
"""
