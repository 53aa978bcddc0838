"""A local HubSpot emulator the official SDK cannot tell from HubSpot (see docs/sandbox.md).

Public entry points: sandbox.config.SandboxConfig, sandbox.app.create_app, sandbox.server.SandboxServer,
sandbox.cli.sandbox. This package never imports worker, rules or webhooks.
"""
