"""Modules imported at their first use (neither operations nor jobs: a helper).

Every process imports the whole app, the ingest's storing process and the match
workers too, and some libraries are large: the stripe SDK alone is 15 MB that a
process which never talks to Stripe need not carry (the ingest's process tree has a
300 MB limit, SPEC §10)."""
import importlib.util
import sys
from types import ModuleType


def lazy_import(name: str) -> ModuleType:
    """The module `name`, loaded when one of its attributes is first read
    (importlib's LazyLoader: the import system's own recipe)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
