"""Asterisk over AMI: options, the AMI framing and session, the channel tracker, the driver."""
from ..base import DriverSpec
from . import options
from .driver import AsteriskDriver

SPEC = DriverSpec("asterisk", options.KEYS, options.parse, AsteriskDriver.from_options)
