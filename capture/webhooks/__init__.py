"""GitHub's webhooks: deliveries verified, made durable and answered at once."""

from capture.settings import WebhookSettings
from capture.webhooks.receiver import Delivery, receive, verify

__all__ = ["Delivery", "WebhookSettings", "receive", "verify"]
