"""Outgoing webhooks: admins register receivers; article and comment events are signed and
POSTed to them through the outbox."""
