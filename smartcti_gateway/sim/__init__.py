"""Simulated systems for demos and tests: a Dígitro NGC, a Protheus SmartCTIWSEventing.

Never imported by the gateway's production modules; only the command line and the composition root
that starts an embedded simulator (gateway.py) load them.
"""
