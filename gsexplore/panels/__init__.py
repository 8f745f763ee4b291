"""ipywidgets panels, every one built from `Params` metadata (no second list of parameters).

>>> import gsexplore as gs
>>> from gsexplore import panels
>>> panels.Playground(gs.LocalBackend.demo())                   # doctest: +SKIP
>>> panels.SweepBuilder(gs.RemoteBackend())                     # doctest: +SKIP
>>> panels.NextTokenExplorer(gs.LocalBackend.demo(), "El cielo es")  # doctest: +SKIP
>>> panels.TokenView(completion, backend)                       # doctest: +SKIP
"""
from . import codegen
from .backend_panel import BackendPanel
from .classroom import Classroom
from .compare import Compare
from .guided_panel import GuidedPanel
from .next_token import NextTokenExplorer
from .params_panel import ParamsPanel
from .playground import Playground
from .sweep_builder import SweepBuilder
from .token_view import TokenView

__all__ = ["BackendPanel", "Classroom", "Compare", "GuidedPanel", "NextTokenExplorer", "ParamsPanel", "Playground",
           "SweepBuilder", "TokenView", "codegen"]
