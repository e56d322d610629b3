"""The transactional outbox: what must leave the building (webhooks, email) is written in the
transaction of the change that caused it, and a background worker sends it, with retries."""
