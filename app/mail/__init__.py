"""Notification email: moderators hear of held comments, commenters of replies (when they ask),
with a one-click unsubscribe link. Sent through the outbox."""
