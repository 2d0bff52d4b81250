"""PABX adapters: one package per switch family, all speaking core.pabx."""
