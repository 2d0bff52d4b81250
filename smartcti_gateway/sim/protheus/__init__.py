"""A simulated Protheus SmartCTIWSEventing (what MV_TKCTIEV points at)."""
from .eventing import ProtheusSimulator, start_protheus_simulator

__all__ = ["ProtheusSimulator", "start_protheus_simulator"]
