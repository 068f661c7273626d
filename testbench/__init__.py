"""The harness: event loop, topologies, scenarios, bug catalogue, CLI and pytest plugin."""
