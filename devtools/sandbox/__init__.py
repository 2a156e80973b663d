"""A local stand-in for GitHub (GraphQL, REST, Actions) and Inngest's Event API."""

from devtools.sandbox.data import World
from devtools.sandbox.server import DEFAULT_EVENT_KEY, DEFAULT_TOKEN, Options, Sandbox

__all__ = ["DEFAULT_EVENT_KEY", "DEFAULT_TOKEN", "Options", "Sandbox", "World"]
