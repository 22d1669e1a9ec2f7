"""(being written)"""

from lyra_core import hookimpl


@hookimpl
def lyra_register_components(registry) -> None:
    pass
