"""A simulated Dígitro NGC: the switch's model (``switch``) and its XML-RPC server (``server``)."""
from .server import build_app, start_simulator
from .switch import Simulator, SimulatorOptions, options_from_config, options_from_mapping

__all__ = ["Simulator", "SimulatorOptions", "build_app", "options_from_config", "options_from_mapping",
           "start_simulator"]
