"""Webhook subscriptions (contract section 9) and the delivery process that sends the stream to them."""
