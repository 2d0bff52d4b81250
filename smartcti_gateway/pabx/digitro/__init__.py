"""Dígitro NGC over XML-RPC (EasyCall Gate): dialect, driver and simulator."""
