"""GitHub clients: one session owns transport, rate limits and accounting."""

from capture.github.client import GitHub, GitHubFactory, connect
from capture.github.graphql import GraphQLClient
from capture.github.rest import RestClient
from capture.github.session import Budget, Meter, Session

__all__ = [
    "Budget",
    "GitHub",
    "GitHubFactory",
    "GraphQLClient",
    "Meter",
    "RestClient",
    "Session",
    "connect",
]
