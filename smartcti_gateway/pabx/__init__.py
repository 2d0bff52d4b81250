"""PABX adapters, one package per switch family, all speaking ``core.pabx``; ``base`` is their contract.

``DRIVERS`` is the registry: the ``pabx.driver`` of a link's config picks an entry. A new PABX is a
package here, its simulator under ``sim/`` if it has one, and one line below.
"""
from .asterisk import SPEC as ASTERISK
from .base import DriverSpec
from .digitro import SPEC as DIGITRO

DRIVERS: dict[str, DriverSpec] = {
    DIGITRO.name: DIGITRO,
    ASTERISK.name: ASTERISK,
}
