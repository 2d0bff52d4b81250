"""The supervisor's board (docs/supervisor.md): who is signed in, what the call centre is doing, and the
actions a supervisor may take on an agent, all served by the gateway under /supervisor.

``options`` (the config section) and ``passwords`` are loaded by config.py and cli.py; the web side
(``web.Supervisor``) by the gateway only. This file imports nothing, so that config.py can read the
section without pulling the web side in.
"""
