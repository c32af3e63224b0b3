"""The running bot: wiring only (docs/architecture.md, "The service: wiring").

``bot.Bot`` builds the parts and starts and stops them; every other module
here has one job: the bus, the inlet, admission and lanes, the responder,
the robot client, the rule manager, commands, lifecycle and health, metrics,
the response log, state sync, the embedded nats-server and the terminal chat.
"""
