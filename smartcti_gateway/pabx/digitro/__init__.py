"""Dígitro NGC over XML-RPC (EasyCall Gate): dialect, options and driver."""
from ..base import DriverSpec
from . import options
from .driver import DigitroDriver

SPEC = DriverSpec("digitro", options.KEYS, options.parse, DigitroDriver.from_options)
